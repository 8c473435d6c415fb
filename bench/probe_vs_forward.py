"""Benchmark 1: a whole linear-probe run vs one bare forward pass over the same images.

The limit for a linear probe is one forward pass. transferkit's run also scans (decodes) every
file, fits the logistic head with cross-validation, evaluates and writes the run folder.

    python bench/probe_vs_forward.py
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

os.environ.setdefault("TRANSFERKIT_QUIET", "1")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import HYM, hymenoptera_items, workers  # noqa: E402


def main() -> None:
    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.data import ImageDataset, Items, eval_transform, resolve_data_config

    train, _ = hymenoptera_items("train")
    val, _ = hymenoptera_items("val")
    items = Items(train.inputs + val.inputs, train.labels + val.labels)
    for p in items.inputs:  # same page cache for both
        open(p, "rb").read()
    b = create_backbone("packaged:efficientnet_lite0").eval()
    tf = eval_transform(resolve_data_config(b.pretrained_cfg))
    loader = torch.utils.data.DataLoader(ImageDataset(items, tf), batch_size=32, num_workers=workers())
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            b(x)
    bare = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = tk.fit(str(HYM), strategy="linear-probe", output=f"{tmp}/runs", cache_dir=f"{tmp}/cache")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        tk.fit(str(HYM), strategy="linear-probe", output=f"{tmp}/runs", cache_dir=f"{tmp}/cache")
        warm = time.perf_counter() - t0
    print(f"{len(items)} images, packaged:efficientnet_lite0, 224 px, {torch.get_num_threads()} threads")
    print("| what | seconds | ratio to bare forward |")
    print("| --- | --- | --- |")
    print(f"| bare forward pass (DataLoader + model) | {bare:.1f} | 1.00 |")
    print(f"| transferkit linear-probe run, cold cache (acc {run.accuracy:.1%}) | {cold:.1f} | {cold / bare:.2f} |")
    print(f"| transferkit linear-probe run, features cached | {warm:.1f} | {warm / bare:.2f} |")


if __name__ == "__main__":
    main()
