"""Time added per epoch by `--track tensorboard`: the same run (data, seed, settings) with and without the tracker,
alternated so both see the same machine load; prints the ratio of their median epoch times.

    python bench/tracking_overhead.py [--epochs 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    import transferkit as tk
    from conftest import TINY, make_folder

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    times: dict[str, list[float]] = {"none": [], "tensorboard": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_folder(Path(tmp) / "d", classes=3, per_class=40)
        for r in range(a.repeats):
            for track in ("none", "tensorboard"):
                run = tk.fit(data, backbone=TINY, image_size=64, strategy="finetune", epochs=a.epochs, workers=0,
                             output=f"{tmp}/runs", cache_dir=f"{tmp}/c", track=None if track == "none" else track)
                times[track] += [row["seconds"] for row in run.history]
    base, tracked = statistics.median(times["none"]), statistics.median(times["tensorboard"])
    print(f"median epoch: {base:.3f} s without a tracker, {tracked:.3f} s with --track tensorboard "
          f"(ratio {tracked / base:.3f}; {a.repeats} × {a.epochs} epochs each)")


if __name__ == "__main__":
    main()
