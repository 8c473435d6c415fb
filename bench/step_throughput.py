"""Benchmark 2 (and 4): fine-tuning throughput and peak memory, transferkit's loop vs a bare PyTorch loop.

Same model (packaged Lite0 + linear head), same images, batch size and augmentation. Each variant runs
in its own process, so peak RSS is measured separately. Throughput is taken after one warm-up epoch.

    python bench/step_throughput.py [--epochs 2] [--image-size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _common import bare_train_steps, hymenoptera_items, lite0_model, peak_rss_mib, workers  # noqa: E402


def variant(name: str, epochs: int, size: int, batch: int) -> dict:
    import torch

    from transferkit.config import RunConfig
    from transferkit.data import ImageDataset, resolve_data_config, train_transform
    from transferkit.strategies import get_strategy
    from transferkit.training import train_loop

    torch.manual_seed(0)
    items, classes = hymenoptera_items("train")
    model = lite0_model(len(classes))
    tf = train_transform(resolve_data_config(model.backbone.pretrained_cfg, size), "light")
    ds = ImageDataset(items, tf)
    steps = len(items) // batch
    if name.startswith("bare"):
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers())
        bn_eval = name == "bare"  # "bare-bn-train": BatchNorm on batch statistics, the textbook default
        bare_train_steps(model, loader, steps, bn_eval=bn_eval)  # warm-up epoch
        n, secs = bare_train_steps(model, loader, steps * (epochs - 1), bn_eval=bn_eval)
    else:
        cfg = RunConfig(strategy="finetune", epochs=epochs, batch_size=batch, workers=workers(), lr=3e-3,
                        backbone_lr_mult=0.1)
        with tempfile.TemporaryDirectory() as tmp:
            from pathlib import Path

            hist = train_loop(model, get_strategy(cfg), ds, None, cfg, Path(tmp), select_on_val=False)
        n = steps * batch * (epochs - 1)
        secs = sum(h["seconds"] for h in hist[1:])
    return {"images_per_s": n / secs, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--variant")
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(variant(a.variant, a.epochs, a.image_size, a.batch_size)))
        return
    res = {}
    for v in ("bare", "bare-bn-train", "transferkit"):
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--epochs", str(a.epochs), "--image-size",
                              str(a.image_size), "--batch-size", str(a.batch_size)], capture_output=True, text=True,
                             check=True)
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
    b, t = res["bare"], res["transferkit"]
    print(f"fine-tune, packaged Lite0, {a.image_size} px, batch {a.batch_size}, hymenoptera train, epoch 2 onward")
    print("| loop | images/s | peak RSS (MiB) |")
    print("| --- | --- | --- |")
    print(f"| bare PyTorch, BatchNorm on running statistics (as transferkit) | {b['images_per_s']:.1f} | {b['peak_rss_mib']:.0f} |")
    bt = res["bare-bn-train"]
    print(f"| bare PyTorch, BatchNorm on batch statistics | {bt['images_per_s']:.1f} | {bt['peak_rss_mib']:.0f} |")
    print(f"| transferkit train_loop | {t['images_per_s']:.1f} | {t['peak_rss_mib']:.0f} |")
    print(f"throughput ratio transferkit / bare: {t['images_per_s'] / b['images_per_s']:.2f} (goal ≥ 0.9); "
          f"peak-memory ratio: {t['peak_rss_mib'] / b['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
