"""Box-labelled data: the split (by image), the cached presize, box-aware augmentation (torchvision
``transforms.v2``), and the batches the detector reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...data import SPLITS, Items, LabelledData, load_rgb
from ...errors import DataError
from ._formats import read_any

log = logging.getLogger("transferkit")


class DetectionData(LabelledData):
    """Images with boxes in any layout ``_formats.read_any`` reads; after :meth:`setup`, ``records_`` maps each
    image path to its boxes and ``splits_[k].labels`` holds each image's first class (0 for background-only)."""

    def __init__(self, path: str | Path, annotations: str | Path | None = None, images: str | Path | None = None,
                 saved: dict[str, list[dict]] | None = None, **split):
        super().__init__(**split)
        self.path = Path(path)
        self.annotations = Path(annotations) if annotations else None
        self.images = Path(images) if images else None
        self.saved = saved  # {split: records} of an earlier run (--resume): used as they are, never re-split

    def describe(self) -> str:
        return f"box-labelled images {self.path}"

    def setup(self) -> "DetectionData":
        if self.is_setup:
            return self
        problems: list[tuple[str, str]] = []
        if self.saved is not None:
            pre, flat, self.val_fraction = self.saved, [], 0.0
        else:
            pre, flat = read_any(self.path, self.annotations, self.images, self.quoting, problems)
        self._list_problems(problems)
        every = flat + [r for part in (pre or {}).values() for r in part]
        good = {str(p) for p in self._filter_bad([Path(r["path"]) for r in every])}
        parts = self._split(pre, [r for r in flat if r["path"] in good], good)
        names = sorted({lab for r in parts["train"] for lab in r["labels"]})
        if not names:
            raise DataError(f"{self.describe()} has no usable boxes in its training images",
                            "boxes around the objects to detect", "Check the annotations (see the listed problems)")
        unseen = sorted({lab for k in ("val", "test") for r in parts[k] for lab in r["labels"]} - set(names))
        if unseen:
            raise DataError(f"Class(es) {', '.join(unseen)} appear in val/test but not in train",
                            "every class to detect among the training boxes",
                            "Add training images with those objects, or remove their boxes from val/test")
        self.classes_ = names
        index = {n: i for i, n in enumerate(names)}
        self.records_ = {r["path"]: r for part in parts.values() for r in part}
        self.splits_ = {k: Items([r["path"] for r in parts[k]], [index[r["labels"][0]] if r["labels"] else 0
                                                                  for r in parts[k]]) for k in SPLITS}
        self.background_only_ = {k: sum(not r["labels"] for r in parts[k]) for k in SPLITS}
        if any(self.background_only_.values()):
            log.info("images without objects (kept as background): %s",
                     ", ".join(f"{k} {v}" for k, v in self.background_only_.items() if v))
        self.leakage_ = self._check_leaks()
        return self

    def _split(self, pre, flat: list[dict], good: set[str]) -> dict[str, list[dict]]:
        """The given split (val carved from train when only train and test are given), else a seeded split by image."""
        rng = np.random.default_rng(self.seed)
        if pre is not None:
            self.presplit_ = True
            return self._carve_val({k: [r for r in pre.get(k, []) if r["path"] in good] for k in SPLITS})
        self.presplit_ = False
        order = rng.permutation(len(flat))
        n_test, n_val = round(self.test_fraction * len(flat)), round(self.val_fraction * len(flat))
        cut = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
        return {k: [flat[i] for i in sorted(v)] for k, v in cut.items()}

    def summary(self) -> str:
        boxes = sum(len(r["boxes"]) for r in self.records_.values())
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits_.items() if len(v))
        return f"{len(self.classes_)} classes ({', '.join(self.classes_[:8])}); {boxes} boxes; images: {sizes}"

    def split_extras(self, split: str) -> dict:
        """What splits.json keeps beside the inputs: each image's boxes (for --resume and evaluate)."""
        return {"records": [self.records_[p] for p in self.splits_[split].inputs]}


@dataclass(frozen=True)
class DetPresize:
    """Resize so the short side is ``short_side`` and the long side at most ``max_side`` (up or down, as
    torchvision's detection transform does) → uint8 (3, H, W): the cacheable decode stage."""

    short_side: int
    max_side: int

    def size(self, w: int, h: int) -> tuple[int, int]:
        s = min(self.short_side / min(w, h), self.max_side / max(w, h))
        return max(1, round(w * s)), max(1, round(h * s))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.resize(self.size(*img.size), Image.BILINEAR)
        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


class DetTransform:
    """``presize`` (cached) then box-aware ``tensor_ops`` (``transforms.v2`` on image + boxes + labels)."""

    def __init__(self, presize: DetPresize, tensor_ops=None, train: bool = False):
        self.presize = presize
        self.tensor_ops = tensor_ops
        self.train = train  # boxes scaled to the presized image, ignored boxes left out

    def __call__(self, img: Image.Image):
        """One image as the dataset gives it (``serve``): presized, with its original size and no boxes."""
        empty = torch.zeros(0, 4)
        return self.presize(img), {"boxes": empty, "labels": torch.zeros(0, dtype=torch.int64),
                                   "ignore": torch.zeros(0, dtype=torch.bool), "orig_size": torch.tensor([img.height, img.width])}

    def __repr__(self) -> str:
        return f"DetTransform({self.presize!r}, {self.tensor_ops!r}, train={self.train})"


def box_ops(augment: str):
    """``none``: nothing; ``light``: horizontal flip; ``standard``: flip, an IoU-preserving random crop
    (SSD's) and photometric distortion. Boxes leaving the image are clipped or dropped (``SanitizeBoundingBoxes``)."""
    from torchvision.transforms import v2  # heavy: loaded on first use

    if augment == "none":
        return None
    ops = [v2.RandomHorizontalFlip()]
    if augment == "standard":
        ops = [v2.RandomPhotometricDistort(p=0.5), v2.RandomIoUCrop(), *ops]
    return v2.Compose([*ops, v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes()])


class DetectionDataset(torch.utils.data.Dataset):
    """Image ``i`` → (float image at the presize, its boxes) and ``i``. ``train``: boxes scaled to the presized
    image and augmented, ignored (difficult / crowd) boxes left out. Otherwise: the boxes in original pixels with
    their ignore flags, for scoring."""

    def __init__(self, items: Items, records: dict[str, dict], transform: DetTransform, classes: list[str],
                 train: bool, held=None):
        self.items, self.records, self.transform, self.train = items, records, transform, train
        self.index = {c: i + 1 for i, c in enumerate(classes)}  # 0 is the background class
        self.held = held

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, i: int) -> tuple[torch.Tensor, tuple[int, int]]:
        path = self.items.inputs[i]
        if self.held is not None and self.held[i] is not None:
            img = self.held[i]
            rec = self.records.get(path)
            return img, (rec["height"], rec["width"]) if rec else img.shape[1:]
        pil = load_rgb(path)
        return self.transform.presize(pil), (pil.size[1], pil.size[0])

    def __getitem__(self, i: int):
        from torchvision import tv_tensors  # heavy: loaded on first use

        img, (h, w) = self._image(i)
        rec = self.records.get(self.items.inputs[i], {"boxes": [], "labels": [], "ignore": []})
        keep = [j for j in range(len(rec["boxes"])) if not (self.train and rec["ignore"][j])]
        boxes = torch.tensor([rec["boxes"][j] for j in keep], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.index.get(rec["labels"][j], 0) for j in keep], dtype=torch.int64)
        ignore = torch.tensor([rec["ignore"][j] for j in keep], dtype=torch.bool)
        if self.train:
            boxes = boxes * torch.tensor([img.shape[2] / w, img.shape[1] / h] * 2)
            if self.transform.tensor_ops is not None:
                out = self.transform.tensor_ops(tv_tensors.Image(img), {"boxes": tv_tensors.BoundingBoxes(
                    boxes, format="XYXY", canvas_size=tuple(img.shape[1:])), "labels": labels})
                img, boxes, labels = out[0].as_subclass(torch.Tensor), out[1]["boxes"].as_subclass(torch.Tensor), out[1]["labels"]
                ignore = torch.zeros(len(labels), dtype=torch.bool)
        target = {"boxes": boxes, "labels": labels, "ignore": ignore, "orig_size": torch.tensor([h, w])}
        return (img, target), i

    @staticmethod
    def collate_fn(batch):
        """Images padded into one tensor (``sizes`` keeps each one's own), boxes concatenated with ``counts``: a
        dict of tensors, so the loop moves it to the device like any batch."""
        images = [b[0][0] for b in batch]
        H, W = max(im.shape[1] for im in images), max(im.shape[2] for im in images)
        out = torch.zeros(len(images), 3, H, W, dtype=torch.uint8)
        for k, im in enumerate(images):
            out[k, :, :im.shape[1], :im.shape[2]] = im
        targets = [b[0][1] for b in batch]
        x = {"images": out, "sizes": torch.tensor([list(im.shape[1:]) for im in images]),
             "orig_sizes": torch.stack([t["orig_size"] for t in targets]),
             "boxes": torch.cat([t["boxes"] for t in targets]), "labels": torch.cat([t["labels"] for t in targets]),
             "ignore": torch.cat([t["ignore"] for t in targets]),
             "counts": torch.tensor([len(t["labels"]) for t in targets])}
        return x, torch.tensor([b[1] for b in batch])


def split_targets(x: dict) -> list[dict[str, torch.Tensor]]:
    """The per-image target dicts of a collated batch."""
    out, start = [], 0
    for n in x["counts"].tolist():
        out.append({k: x[k][start:start + n] for k in ("boxes", "labels", "ignore")})
        start += n
    return out
