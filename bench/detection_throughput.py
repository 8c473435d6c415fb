"""Detection training and inference speed: transferkit's detector run against a bare torchvision Faster R-CNN loop
with the same backbone weights, FPN, anchors, heads, image size and batch, in one run.

The bare loop is what a user writes from torchvision's detection tutorial: a timm ``features_only`` EfficientNet-
Lite0 (the packaged ImageNet weights) under torchvision's ``FeaturePyramidNetwork``, ``FasterRCNN`` with the same
anchor generator, RoI pooling and box head as transferkit's, a DataLoader that decodes each JPEG with PIL every
epoch, ``model(images, targets)`` → loss dict, AdamW. BatchNorm keeps its pretrained statistics in both (transferkit's
default). The figures are training images per second over one epoch of the same images (the first epoch of each,
so transferkit's one-off decode into its cache is counted in its run but not in the epoch), and inference images
per second over the evaluation images (a second, warm pass for both).

    python bench/detection_throughput.py [--images 32] [--eval 16] [--size 512]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_speeds, run_speeds, warm_seconds  # noqa: E402

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
RACCOON = Path(__file__).resolve().parents[2] / "shared" / "data" / "raccoon"

BATCH = 4


def subset_csv(root: Path, n_train: int, n_eval: int, out: Path) -> Path:
    rows = list(csv.DictReader(open(root / "data" / "train_labels.csv")))
    names = list(dict.fromkeys(r["filename"] for r in rows))
    keep = {n: ("train" if i < n_train else "test") for i, n in enumerate(names[: n_train + n_eval])}
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "split"])
        w.writeheader()
        for r in rows:
            if r["filename"] in keep:
                w.writerow({**r, "filename": str(root / "images" / r["filename"]), "split": keep[r["filename"]]})
    return out


def bare_model(size: int):
    """torchvision's FasterRCNN on a timm features_only Lite0 with the packaged weights, heads as transferkit's."""
    import timm
    from torch import nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    from transferkit.backbones import create_backbone

    weights = create_backbone("packaged:efficientnet_lite0").model.state_dict()
    body = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(2, 3, 4))
    body.load_state_dict({k: v for k, v in weights.items() if k in body.state_dict()}, strict=False)

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fpn, self.out_channels = body, FeaturePyramidNetwork(body.feature_info.channels(), 128,
                                                                                 LastLevelMaxPool()), 128

        def forward(self, x):
            return self.fpn({str(i): f for i, f in enumerate(self.body(x))})

    sizes = tuple((32 * 2 ** i, int(45 * 2 ** i)) for i in range(4))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 4)
    jitter = tuple(sorted({int(size * f) // 32 * 32 for f in (0.8, 0.875, 0.95)} | {size}))
    return FasterRCNN(Body(), num_classes=None, min_size=jitter, max_size=round(size * 5 / 3),
                      image_mean=[0.5] * 3, image_std=[0.5] * 3, rpn_anchor_generator=anchors,
                      rpn_pre_nms_top_n_train=1000, rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_train=500,
                      rpn_post_nms_top_n_test=300, rpn_batch_size_per_image=256,
                      box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2), box_head=TwoMLPHead(128 * 49, 512),
                      box_predictor=FastRCNNPredictor(512, 2), box_batch_size_per_image=256)


def bare_data(table: Path, split: str):
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    by: dict[str, list] = {}
    for r in csv.DictReader(open(table)):
        if r["split"] == split:
            by.setdefault(r["filename"], []).append([float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(by)

        def __getitem__(self, i):
            path, boxes = list(by.items())[i]
            img = F.to_image(Image.open(path).convert("RGB"))
            return F.to_dtype(img, torch.float32, scale=True), {"boxes": torch.tensor(boxes), "labels": torch.ones(len(boxes), dtype=torch.int64)}

    return DS()


def run_bare(table: Path, size: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = bare_model(size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4, weight_decay=0.01)
    loader = torch.utils.data.DataLoader(bare_data(table, "train"), BATCH, shuffle=True, drop_last=True,
                                         collate_fn=lambda b: tuple(zip(*b)))
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    t0, n = time.perf_counter(), 0
    for images, targets in loader:
        loss = sum(model(list(images), list(targets)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(images)
    train = n / (time.perf_counter() - t0)
    model.eval()
    ds = bare_data(table, "test")

    def infer():
        with torch.inference_mode():
            for i in range(0, len(ds), BATCH):
                model([ds[j][0] for j in range(i, min(len(ds), i + BATCH))])

    return train, len(ds) / warm_seconds(infer)


def run_transferkit(table: Path, size: int, out: Path) -> tuple[float, float]:
    import transferkit as tk

    return run_speeds(tk.fit(str(table), task="detect", strategy="finetune", epochs=1, batch_size=BATCH,
                             image_size=size, val_fraction=0.0, output=str(out), workers=0), BATCH)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        table = subset_csv(RACCOON, a.images, a.eval, Path(tmp) / "boxes.csv")
        bare_train, bare_infer = run_bare(table, a.size)
        tk_train, tk_infer = run_transferkit(table, a.size, Path(tmp) / "runs")
    print_speeds(f"raccoon, {a.images} training / {a.eval} evaluation images, shorter side {a.size}, batch {BATCH}, "
                 f"{torch.get_num_threads()} threads", "bare torchvision loop", (bare_train, bare_infer),
                 (tk_train, tk_infer))

if __name__ == "__main__":
    main()
