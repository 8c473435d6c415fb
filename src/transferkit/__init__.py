"""transferkit: transfer learning with PyTorch — pretrained backbones, strategies, honest evaluation.

Example:
    >>> import transferkit as tk
    >>> run = tk.fit("photos/", backbone="packaged:efficientnet_lite0", strategy="linear-probe")
    >>> tk.load(run.path).predict(["cat.jpg"])
"""

from .backbones import create_backbone
from .config import RunConfig
from .data import CsvImageData, ImageFolderData
from .errors import TransferkitError
from .predict import Predictor, evaluate, load
from .training import Run, fit, load_run
from .tune import tune

__version__ = "0.1.0"

__all__ = [
    "CsvImageData", "ImageFolderData", "Predictor", "Run", "RunConfig", "TransferkitError",
    "create_backbone", "evaluate", "fit", "load", "load_run", "tune",
]
