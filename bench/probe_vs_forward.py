"""Benchmark 1: a whole linear-probe run vs one bare forward pass over the same images.

The limit for a linear probe is one forward pass. transferkit's run also scans (decodes) every
file, fits the logistic head with cross-validation, evaluates and writes the run folder. The bare
pass is timed after a warm-up batch, in the usual NCHW layout and in channels-last (the layout
transferkit uses); the probe is also run with ``precision="bf16"`` (bf16 autocast on CPU), with its
accuracy, to show what bf16 would buy and cost on this CPU.

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


def bare_pass(model, loader, channels_last: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            model(x.contiguous(memory_format=fmt))
    return time.perf_counter() - t0


def main() -> None:
    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.data import ImageDataset, Items, eval_transform, resolve_data_config

    train, _ = hymenoptera_items("train")
    val, _ = hymenoptera_items("val")
    items = Items(train.inputs + val.inputs, train.labels + val.labels)
    for p in items.inputs:  # same page cache for every contender
        open(p, "rb").read()
    b = create_backbone("packaged:efficientnet_lite0").eval()
    tf = eval_transform(resolve_data_config(b.pretrained_cfg))
    loader = torch.utils.data.DataLoader(ImageDataset(items, tf), batch_size=32, num_workers=workers())
    with torch.inference_mode():  # warm-up: first-call costs are not part of either side
        b(torch.zeros(2, 3, 224, 224))
    bare = bare_pass(b, loader, channels_last=False)
    bare_nhwc = bare_pass(b, loader, channels_last=True)
    rows = [("bare forward pass (DataLoader + model, NCHW)", bare, None),
            ("bare forward pass, channels-last", bare_nhwc, None)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in (("transferkit linear-probe run, cold feature cache", {}),
                         ("transferkit linear-probe run, features cached", {}),
                         ("transferkit linear-probe run, cold, precision bf16", {"precision": "bf16"})):
            t0 = time.perf_counter()
            run = tk.fit(str(HYM), strategy="linear-probe", output=f"{tmp}/runs", cache_dir=f"{tmp}/cache", **kw)
            rows.append((name, time.perf_counter() - t0, run.accuracy))
    print(f"{len(items)} images, packaged:efficientnet_lite0, 224 px, {torch.get_num_threads()} threads")
    print("| what | seconds | ratio to bare forward | val accuracy |")
    print("| --- | --- | --- | --- |")
    for name, secs, acc in rows:
        print(f"| {name} | {secs:.1f} | {secs / bare:.2f} | {'' if acc is None else f'{acc:.1%}'} |")


if __name__ == "__main__":
    main()
