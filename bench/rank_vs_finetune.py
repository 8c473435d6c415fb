"""Does the transferability ranking predict fine-tuned accuracy? And what does it cost?

Ranks the packaged EfficientNet-Lite0/1/2 and a random-init control on each data set, then
fine-tunes each with the same budget, and prints Kendall's tau between every score and the
fine-tuned accuracy, and the time ratio rank-all / fine-tune-all.

    python bench/rank_vs_finetune.py [--epochs 3] [--image-size 160] [--shots 50]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from scipy.stats import kendalltau

import transferkit as tk
from transferkit.modalities import data_for
from transferkit.config import resolve_config
from transferkit.ranking import METRICS, rank

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKBONES = ["packaged:efficientnet_lite0", "packaged:efficientnet_lite1", "packaged:efficientnet_lite2",
             "random:tf_efficientnet_lite0"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--shots", type=int, default=50, help="train images per class for natural_images")
    ap.add_argument("--output", default="/tmp/transferkit-bench")
    ap.add_argument("--datasets", default="hymenoptera,natural_images")
    args = ap.parse_args()
    os.environ.setdefault("TRANSFERKIT_QUIET", "1")
    print("| data | " + " | ".join(f"τ {m}" for m in METRICS) + " | rank all / fine-tune all |")
    print("| --- | " + " | ".join("---" for _ in METRICS) + " | --- |")
    for name in args.datasets.split(","):
        path = SHARED / name
        shots = None if name == "hymenoptera" else args.shots
        data = data_for(resolve_config({"data": str(path), "shots": shots, "val_fraction": 0.15,
                                                "test_fraction": 0.15}))
        t0 = time.time()
        rows = {r["backbone"]: r for r in rank(data, BACKBONES, image_size=args.image_size,
                                               cache_dir=Path(args.output) / "cache")}
        t_rank = time.time() - t0
        acc, t0 = {}, time.time()
        for b in BACKBONES:
            run = tk.fit(data, backbone=b, strategy="finetune", epochs=args.epochs, image_size=args.image_size,
                         output=str(Path(args.output) / "runs"), cache_dir=str(Path(args.output) / "cache"))
            acc[b] = run.accuracy
        t_ft = time.time() - t0
        for b in BACKBONES:
            print(f"  {name} {b}: fine-tuned acc {acc[b]:.3f}; " +
                  ", ".join(f"{m} {rows[b][m]:.4g}" for m in METRICS if rows[b][m] is not None))
        taus = [kendalltau([rows[b][m] for b in BACKBONES], [acc[b] for b in BACKBONES]).statistic for m in METRICS]
        print(f"| {name} ({len(data.splits_['train'])} train) | " + " | ".join(f"{t:+.2f}" for t in taus)
              + f" | {t_rank:.0f} s / {t_ft:.0f} s = {t_rank / t_ft:.3f} |")


if __name__ == "__main__":
    main()
