"""Benchmark 2 (and 4): fine-tuning throughput and peak memory, transferkit's loop vs a bare PyTorch loop.

Same model (packaged Lite0 + linear head), same images (hymenoptera train), batch size, light
augmentation and BatchNorm policy (running statistics, transferkit's default for a pretrained backbone).
Each variant runs in its own process, so peak RSS is measured separately; throughput is taken after
one warm-up epoch. Variants:

- limit: the forward + backward compute alone — the bare channels-last step on one epoch's batches
  prepared beforehand and held in memory, so no decoding or augmentation is timed;
- bare: the plain PyTorch loop a user writes — torchvision transforms on the decoded JPEG in 2
  DataLoader workers, NCHW, fp32;
- bare-nhwc / bare-nhwc-bf16: the same step in channels-last layout / and under bf16 autocast (the
  measurements behind transferkit's defaults);
- transferkit: ``train_loop`` with its defaults (decoded-image cache, channels-last, precision auto);
- transferkit-no-cache / transferkit-nchw: one default switched off, to show what each is worth;
- transferkit-workers2: 2 worker processes rather than the CPU default of none once images are cached.

    python bench/step_throughput.py [--epochs 2] [--image-size 224] [--variants bare,transferkit]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _common import (bare_train_steps, hymenoptera_items, lite0_model, peak_rss_mib,  # noqa: E402
                     plain_train_transform, workers)

VARIANTS = {
    "limit": "compute limit: bare channels-last step on batches already in memory (no data work)",
    "bare": "bare PyTorch: torchvision on JPEGs, 2 workers, NCHW, fp32",
    "bare-nhwc": "bare PyTorch, channels-last",
    "bare-nhwc-bf16": "bare PyTorch, channels-last, bf16 autocast",
    "transferkit": "transferkit train_loop (defaults: image cache, channels-last, fp32 on CPU)",
    "transferkit-no-cache": "transferkit, image cache off (--image-cache-mb 0)",
    "transferkit-nchw": "transferkit, channels-last off (--no-channels-last)",
    "transferkit-workers2": "transferkit, 2 DataLoader workers instead of 0 for a cached dataset on CPU",
}


def variant(name: str, epochs: int, size: int, batch: int) -> dict:
    import torch

    from transferkit.config import RunConfig
    from transferkit.data import resolve_data_config, train_transform
    from transferkit.modalities import get_modality
    from transferkit.strategies import get_strategy
    from transferkit.tasks import get_task
    from transferkit.config import RUN_DEFAULTS, fill_defaults
    from transferkit.training import ChannelsLast, train_loop

    torch.manual_seed(0)
    items, classes = hymenoptera_items("train")
    model = lite0_model(len(classes))
    dc = resolve_data_config(model.backbone.pretrained_cfg, size)
    steps = len(items) // batch
    if name.startswith("bare") or name == "limit":
        from transferkit.data import ImageDataset

        ds = ImageDataset(items, plain_train_transform(size, dc["mean"], dc["std"]))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers())
        if name == "limit":
            loader = list(loader)  # decoded and augmented before the clock starts
        kw = dict(channels_last="nhwc" in name or name == "limit", bf16=name.endswith("bf16"))
        bare_train_steps(model, loader, steps, **kw)  # warm-up epoch
        n, secs = bare_train_steps(model, loader, steps * (epochs - 1), **kw)
    else:
        cfg = fill_defaults(RunConfig(strategy="finetune", epochs=epochs, batch_size=batch, lr=3e-3, backbone_lr_mult=0.1,
                                      image_cache_mb=0 if name.endswith("no-cache") else None,
                                      channels_last=not name.endswith("nchw"),
                                      workers=2 if name.endswith("workers2") else None), RUN_DEFAULTS)
        ds = get_modality("image").dataset(model.backbone, items, train_transform(dc, "light"), cfg, fill=True)
        image = get_modality("image")
        hist = train_loop(model, get_strategy(cfg), get_task("classify")(), ds, cfg,
                          [ChannelsLast() if image.channels_last(cfg) else None])
        n = steps * batch * (epochs - 1)
        secs = sum(h["seconds"] for h in hist[1:])
    return {"images_per_s": n / secs, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--variant")
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(variant(a.variant, a.epochs, a.image_size, a.batch_size)))
        return
    res = {}
    for v in a.variants.split(","):
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--epochs", str(a.epochs), "--image-size",
                              str(a.image_size), "--batch-size", str(a.batch_size)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"variant {v} failed:\n{out.stderr[-3000:]}")
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {v}: {res[v]['images_per_s']:.1f} img/s, peak RSS {res[v]['peak_rss_mib']:.0f} MiB", flush=True)
    base = res.get("bare")
    print(f"fine-tune, packaged Lite0, {a.image_size} px, batch {a.batch_size}, hymenoptera train, "
          f"epochs 2-{a.epochs}, {os.cpu_count()} cores")
    print("| loop | images/s | vs bare | peak RSS (MiB) | vs bare |")
    print("| --- | --- | --- | --- | --- |")
    for v, r in res.items():
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}" if base else ""
        mem = f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}" if base else ""
        print(f"| {VARIANTS[v]} | {r['images_per_s']:.1f} | {ratio} | {r['peak_rss_mib']:.0f} | {mem} |")
    if "limit" in res and "transferkit" in res:
        print(f"transferkit / compute limit (same layout and precision) = "
              f"{res['transferkit']['images_per_s'] / res['limit']['images_per_s']:.2f} (goal ≥ 0.9)")


if __name__ == "__main__":
    main()
