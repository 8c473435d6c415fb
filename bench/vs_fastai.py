"""Benchmark 3: transferkit vs fastai's ``vision_learner(...).fine_tune`` vs the textbook recipe.

All on ../shared/data/hymenoptera (train → val), the packaged EfficientNet-Lite0 weights, 224 px,
5 epochs, batch 16, inputs scaled as the weights expect (mean = std = 0.5).

- textbook: frozen backbone + new linear head, SGD lr 0.001 momentum 0.9, random flip, the backbone
  re-run on every image every epoch (the PyTorch transfer-learning tutorial's recipe);
- fastai: ``vision_learner(dls, arch, cut=-2).fine_tune(4, freeze_epochs=1)`` (5 epochs in all);
- transferkit: ``linear-probe`` and ``finetune`` with their defaults.

    pip install 'transferkit[bench]'; python bench/vs_fastai.py [--skip fastai] [--seeds 3]

With ``--seeds N`` every method runs N times (seeds 0..N-1) and the table shows mean ± sd.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _common import HYM, hymenoptera_items, workers  # noqa: E402

EPOCHS, BATCH = 5, 16


def seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def textbook(seed: int) -> float:
    import torch.nn.functional as F
    from torchvision import transforms as T

    from transferkit.backbones import create_backbone
    from transferkit.data import ImageDataset

    seed_all(seed)
    b = create_backbone("packaged:efficientnet_lite0").eval()
    for p in b.parameters():
        p.requires_grad_(False)
    head = torch.nn.Linear(b.num_features, 2)
    norm = T.Normalize([0.5] * 3, [0.5] * 3)
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
    tr, _ = hymenoptera_items("train")
    va, _ = hymenoptera_items("val")
    opt = torch.optim.SGD(head.parameters(), lr=0.001, momentum=0.9)
    loader = torch.utils.data.DataLoader(ImageDataset(tr, train_tf), batch_size=BATCH, shuffle=True, num_workers=workers())
    for _ in range(EPOCHS):
        for x, y in loader:
            with torch.no_grad():
                f = b(x)
            loss = F.cross_entropy(head(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(ImageDataset(va, val_tf), batch_size=32, num_workers=workers()):
            correct += int((head(b(x)).argmax(1) == y).sum())
    return correct / len(va)


def fastai_run(seed: int) -> float:
    from fastai.vision.all import (ImageDataLoaders, Normalize, Resize, accuracy, aug_transforms,
                                   vision_learner)

    from transferkit.backbones import create_backbone

    seed_all(seed)
    dls = ImageDataLoaders.from_folder(HYM, train="train", valid="val", item_tfms=Resize(224), bs=BATCH,
                                       batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5] * 3, [0.5] * 3)],
                                       num_workers=workers())

    def arch(pretrained: bool = True):
        return create_backbone("packaged:efficientnet_lite0").model

    learn = vision_learner(dls, arch, cut=-2, normalize=False, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(EPOCHS - 1, freeze_epochs=1)
    return float(learn.validate()[1])


def transferkit_run(strategy: str, seed: int) -> float:
    import transferkit as tk

    with tempfile.TemporaryDirectory() as tmp:
        return tk.fit(str(HYM), strategy=strategy, epochs=EPOCHS, batch_size=BATCH, output=f"{tmp}/r",
                      cache_dir=f"{tmp}/c", seed=seed).accuracy


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="", help="comma-separated: textbook,fastai,linear-probe,finetune")
    ap.add_argument("--seeds", type=int, default=1)
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    contenders = {"textbook": ("textbook (frozen, SGD, backbone re-run each epoch)", textbook),
                  "fastai": ("fastai vision_learner.fine_tune(4, freeze_epochs=1)", fastai_run),
                  "linear-probe": ("transferkit linear-probe", lambda s: transferkit_run("linear-probe", s)),
                  "finetune": ("transferkit finetune", lambda s: transferkit_run("finetune", s))}
    rows = []
    for key, (name, fn) in contenders.items():
        if key in skip:
            continue
        accs, secs = [], []
        for seed in range(a.seeds):
            t0 = time.perf_counter()
            accs.append(fn(seed))
            secs.append(time.perf_counter() - t0)
            print(f"  {name}, seed {seed}: {accs[-1]:.1%} in {secs[-1]:.0f} s", flush=True)
        rows.append((key, name, np.array(accs), float(np.mean(secs))))
    ref = next((t for k, _, _, t in rows if k == "fastai"), None)
    print(f"hymenoptera train → val, Lite0, {EPOCHS} epochs, batch {BATCH}, {a.seeds} seed(s)")
    print("| method | val accuracy | wall per run | time / fastai |")
    print("| --- | --- | --- | --- |")
    for _, name, accs, secs in rows:
        acc = f"{accs.mean():.1%} ± {accs.std():.1%}" if len(accs) > 1 else f"{accs[0]:.1%}"
        print(f"| {name} | {acc} | {secs:.0f} s | {secs / ref:.2f} |" if ref else f"| {name} | {acc} | {secs:.0f} s | |")


if __name__ == "__main__":
    main()
