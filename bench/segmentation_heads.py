"""Training and inference speed of the three segmentation heads on the same backbone, size and batch, in one run:
U-Net, FPN and DeepLabV3+ (smp's decoders on the packaged Lite0's five stages), random inputs, ratios to U-Net.

    python bench/segmentation_heads.py [--size 320] [--batch 8] [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F


def main() -> None:
    from transferkit.backbones import create_backbone
    from transferkit.tasks.segmentation._model import HEADS, Segmenter

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    x = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8)
    y = torch.randint(0, 5, (a.batch, a.size, a.size))
    rows = {}
    for head in HEADS:
        torch.manual_seed(0)
        model = Segmenter(create_backbone("packaged:efficientnet_lite0"), 5, head).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        for step in range(a.steps + 1):  # the first step is a warm-up, not timed
            if step == 1:
                t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train = a.steps * a.batch / (time.perf_counter() - t0)
        model.eval()
        with torch.inference_mode():
            model(x)
            t0 = time.perf_counter()
            for _ in range(a.steps):
                model(x)
        infer = a.steps * a.batch / (time.perf_counter() - t0)
        rows[head] = (train, infer, sum(p.numel() for p in model.head.parameters()) / 1e6)
    print(f"{a.size} px, batch {a.batch}, {torch.get_num_threads()} threads, packaged Lite0")
    print(f"{'head':16}{'train img/s':>12}{'infer img/s':>12}{'× U-Net':>9}{'decoder M':>11}")
    for head, (t, i, p) in rows.items():
        print(f"{head:16}{t:12.2f}{i:12.2f}{t / rows['unet'][0]:9.2f}{p:11.2f}")


if __name__ == "__main__":
    main()
