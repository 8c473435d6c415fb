"""``transferkit demo``: a fully offline run on a real image set that ships with scikit-learn."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from .training import fit


def write_digits(root: Path, per_class: int = 50, size: int = 32, seed: int = 0) -> Path:
    """Write scikit-learn's handwritten digits (8×8 scans) as PNGs in ``root/<digit>/``."""
    from sklearn.datasets import load_digits  # heavy: loaded on first use

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for d in range(10):
        (root / str(d)).mkdir(parents=True, exist_ok=True)
        idx = rng.choice(np.flatnonzero(digits.target == d), per_class, replace=False)
        for i in idx:
            img = (255 - digits.images[i] * 255 / 16).astype(np.uint8)  # dark ink on white paper
            Image.fromarray(img, "L").resize((size, size), Image.BICUBIC).save(root / str(d) / f"{i}.png")
    return root


def run_demo(output: Path, epochs: int = 3, console: Console | None = None,
             backbone: str = "packaged:efficientnet_lite0", image_size: int = 128, per_class: int = 50,
             strategies: tuple[str, ...] = ("linear-probe", "finetune", "scratch")) -> list:
    """Train each strategy on the digits and print accuracy, macro-F1, time and gain over scratch."""
    console = console or Console(markup=False)
    output = Path(output)
    data = write_digits(output / "digits", per_class=per_class)
    console.print(f"demo data: {per_class} handwritten digits per class (scikit-learn) in {data}")
    runs = {}
    for s in strategies:
        t0 = time.time()
        runs[s] = fit(str(data), backbone=backbone, strategy=s, epochs=epochs, image_size=image_size,
                      output=str(output / "runs"), val_fraction=0.2, test_fraction=0.2, augment="none")
        runs[s].metrics["wall"] = time.time() - t0
    scratch = runs.get("scratch")
    t = Table(title=f"{backbone} on digits test split ({runs[strategies[0]].metrics['n']} images)")
    for col in ("strategy", "accuracy", "macro-F1", "time", "gain over scratch", "run folder"):
        t.add_column(col)
    for s, r in runs.items():
        gain = "" if scratch is None or s == "scratch" else f"{r.accuracy - scratch.accuracy:+.1%}"
        t.add_row(s, f"{r.accuracy:.1%}", f"{r.metrics['macro_f1']:.3f}", f"{r.metrics['wall']:.0f} s", gain,
                  str(r.path))
    console.print(t)
    return list(runs.values())
