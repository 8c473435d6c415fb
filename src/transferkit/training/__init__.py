"""Training: the loop, and a whole run from data to run folder."""

from ._fit import Run, load_run
from ._loop import train_loop
from ._plan import default_backbone
from ._start import fit

__all__ = ["Run", "default_backbone", "fit", "load_run", "train_loop"]
