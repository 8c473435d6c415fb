"""How often the converted packaged EfficientNet-Lite0 names the exact ImageNet class of real photos.

Runs on ../shared/data/hymenoptera/val (ants → ImageNet 310 'ant', bees → 309 'bee') under three
preprocessings: timm's config for tf_efficientnet_lite0 (bicubic, mean = std = 0.5), the same with
bilinear, and ImageNet mean/std. A wrong key mapping or wrong normalisation shows up as a drop.

    python bench/packaged_imagenet_check.py [--data ../shared/data/hymenoptera/val]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from transferkit.backbones import create_backbone
from transferkit.data import ImageDataset, Items, eval_transform, resolve_data_config

IMAGENET = {"ants": 310, "bees": 309}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/hymenoptera/val"))
    args = ap.parse_args()
    files = [(str(f), IMAGENET[c]) for c in IMAGENET for f in sorted((Path(args.data) / c).glob("*.jpg"))]
    b = create_backbone("packaged:efficientnet_lite0").eval()
    base = resolve_data_config(b.pretrained_cfg)
    variants = {
        "timm cfg (bicubic, mean=std=0.5)": base,
        "bilinear, mean=std=0.5": {**base, "interpolation": "bilinear"},
        "bicubic, ImageNet mean/std": {**base, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    }
    items = Items([f for f, _ in files], [t for _, t in files])
    print(f"{len(files)} photos in {args.data}")
    for name, dc in variants.items():
        t0 = time.time()
        loader = torch.utils.data.DataLoader(ImageDataset(items, eval_transform(dc)), batch_size=32)
        hits = 0
        with torch.inference_mode():
            for x, y in loader:
                hits += int((b.source_head(b(x)).argmax(1) == y).sum())
        print(f"{name:36s} exact ImageNet class {hits}/{len(files)} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
