"""Shared pieces of the speed benchmarks: the images, the model, a bare PyTorch loop."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import torch

HYM = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"


def hymenoptera_items(split: str = "train"):
    """(paths, labels) of the usable images of one split (the GIF placeholder left out)."""
    from transferkit.data import ImageFolderData

    data = ImageFolderData(HYM).setup()
    return data.splits_[split], data.classes_


def lite0_model(num_classes: int = 2):
    from transferkit.backbones import create_backbone
    from transferkit.heads import TransferModel, build_head

    b = create_backbone("packaged:efficientnet_lite0")
    return TransferModel(b, build_head("linear", b.num_features, num_classes))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers() -> int:
    return min(2, os.cpu_count() or 1)


def plain_train_transform(size: int, mean, std, scale=(0.5, 1.0)):
    """What a user writes with torchvision: random-resized crop of the full decoded image, flip, normalise."""
    from torchvision import transforms as T

    return T.Compose([T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def bare_train_steps(model, loader, steps: int, lr: float = 3e-4, bn_eval: bool = True,
                     channels_last: bool = False, bf16: bool = False) -> tuple[int, float]:
    """The plain PyTorch step: forward, cross-entropy, backward, AdamW. Returns (images, seconds).

    ``bn_eval`` keeps BatchNorm on its running statistics, as transferkit's default policy does for a
    pretrained backbone, so both loops do the same arithmetic. ``channels_last`` / ``bf16``: the same
    step in NHWC layout / under bf16 autocast.
    """
    import time

    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    if bn_eval:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    n, t0, done = 0, time.perf_counter(), 0
    while done < steps:
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
            done += 1
            if done >= steps:
                break
    return n, time.perf_counter() - t0


def warm_seconds(infer) -> float:
    """Seconds of a second pass over the evaluation inputs: the first pass pays one-off costs (kernel selection per
    input shape, allocator growth) that depend on what ran before, not on the inference path."""
    import time

    infer()
    t0 = time.perf_counter()
    infer()
    return time.perf_counter() - t0


def run_speeds(run, batch: int) -> tuple[float, float]:
    """A finished one-epoch run's training images/s (its epoch, full batches) and inference images/s on its test
    split (a warm pass through ``predict``'s path)."""
    import json

    import transferkit as tk

    n_train = run.metrics["n_train"] // batch * batch
    pred = tk.load(run.path)
    test = json.loads((run.path / "splits.json").read_text())["test"]["inputs"]
    return n_train / run.history[0]["seconds"], len(test) / warm_seconds(lambda: pred.outputs(test, batch_size=batch))


def print_speeds(title: str, bare_name: str, bare: tuple[float, float], ours: tuple[float, float]) -> None:
    print(title)
    print(f"{'':28}{'train img/s':>12}{'infer img/s':>12}")
    print(f"{bare_name:28}{bare[0]:12.2f}{bare[1]:12.2f}")
    print(f"{'transferkit':28}{ours[0]:12.2f}{ours[1]:12.2f}")
    print(f"{'ratio (transferkit/bare)':28}{ours[0] / bare[0]:12.2f}{ours[1] / bare[1]:12.2f}")
