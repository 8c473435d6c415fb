"""Mask-labelled data: the layouts ``_formats`` reads, masks as ``_masks`` reads them, the split by image, the
cached presize, and augmentation that moves masks with the pixels (``transforms.v2`` with ``tv_tensors.Mask``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...data import SPLITS, Items, LabelledData, load_rgb, upright_size
from ...errors import DataError
from ._formats import VOC_CLASSES, coco_classes, read_class_table, read_layout
from ._masks import IGNORE, load_mask, scan

log = logging.getLogger("transferkit")


class SegmentationData(LabelledData):
    """Images with class masks. After :meth:`setup`: ``records_`` (image path → ``{path, mask}``), ``spec_`` (how
    masks are read: ``num_classes``, ``binary``, ``colors``), ``classes_``, ``splits_`` (labels are 0: a
    segmentation split is by image)."""

    def __init__(self, path: str | Path, saved: dict | None = None, **split):
        super().__init__(**split)
        self.path = Path(path)
        self.saved = saved  # {"records": {split: [...]}, "spec": {...}, "classes": [...]} of an earlier run

    def describe(self) -> str:
        return f"mask-labelled images {self.path}"

    def setup(self) -> "SegmentationData":
        if self.is_setup:
            return self
        problems: list[tuple[str, str]] = []
        if self.saved is not None:
            parts, self.spec_, self.classes_ = self.saved["records"], self.saved["spec"], self.saved["classes"]
            self.presplit_, self.pixels_ = True, {}
        else:
            parts = self._read(problems)
        self._list_problems(problems)  # beside the undecodable images _filter_bad listed
        if not parts["train"]:
            raise DataError(f"{self.describe()} has no usable training images with masks", "images with class masks",
                            "Check the listed problems")
        self.records_ = {r["path"]: r for part in parts.values() for r in part}
        self.splits_ = {k: Items([r["path"] for r in parts[k]], [0] * len(parts[k])) for k in SPLITS}
        self.leakage_ = self._check_leaks()
        self._report_classes()
        return self

    def _read(self, problems: list) -> dict[str, list[dict]]:
        pre, flat, self.source_ = read_layout(self.path, self.quoting, problems)
        names, colors = read_class_table(self.path)
        every = flat + [r for part in (pre or {}).values() for r in part]
        good = {str(p) for p in self._filter_bad([Path(r["path"]) for r in every])}
        candidates = [r for r in every if r["path"] in good]
        every, self.spec_, self.pixels_ = scan(candidates, names, colors, problems)
        if not every:
            listed = [f"{Path(p).name}: {why}" for p, why in problems[-3:]]
            raise DataError(f"{self.describe()}: none of the {len(candidates)} image/mask pair(s) can be used "
                            f"({'; '.join(listed) or 'no pairs found'})", "images with readable class masks of the "
                            "same size (255 marks pixels to ignore)", "Fix the listed masks")
        kept = {r["path"]: r for r in every}  # as the scan left them (with how a mask is turned, where it is)
        if names is None:
            names = self._default_names(every)
        if len(names) < 2:
            raise DataError(f"{self.describe()}: the masks hold {len(names)} class(es)", "at least 2 classes (e.g. "
                            "background and one object); 255 marks pixels to ignore", "Check the masks")
        self.classes_ = list(names)
        if pre is None:
            flat = [kept[r["path"]] for r in flat if r["path"] in kept]
            self.presplit_ = False
            idx = self.split_indices([r["path"] for r in flat], [0] * len(flat), ["all"])
            return {k: [flat[i] for i in sorted(idx[k])] for k in SPLITS}
        self.presplit_ = True
        return self._carve_val({k: [kept[r["path"]] for r in pre.get(k, []) if r["path"] in kept] for k in SPLITS})

    def _default_names(self, records: list[dict]) -> list[str]:
        n = self.spec_["num_classes"]
        if records and "coco" in records[0]:
            return coco_classes(Path(records[0]["coco"]))
        if self.spec_["binary"]:
            return ["background", "foreground"]
        if self.spec_.get("values"):
            return [str(v) for v in self.spec_["values"]]
        if n <= len(VOC_CLASSES) and any("SegmentationClass" in r.get("mask", "") for r in records):
            return list(VOC_CLASSES)
        log.info("no classes.txt: classes are named by their mask value (0 … %d)", n - 1)
        return [str(i) for i in range(n)]

    def _report_classes(self) -> None:
        self.spec_["num_classes"] = len(self.classes_)  # values beyond the class table were listed by the scan
        pixels = getattr(self, "pixels_", {})
        if not pixels:
            return
        seen = {k for p in self.splits_["train"].inputs for k, n in pixels.get(p, {}).items() if n}
        never = [c for i, c in enumerate(self.classes_) if i not in seen]
        if never:
            log.warning("class(es) %s never appear in the training masks: the model cannot learn them (their IoU is "
                        "scored where they appear in val/test)", ", ".join(never))
        empty = sum(set(pixels.get(p, {})) <= {0, IGNORE} for p in self.records_)
        if empty:
            log.info("%d image(s) hold background (class 0) only: kept and counted", empty)

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits_.items() if len(v))
        return f"{len(self.classes_)} classes ({', '.join(self.classes_[:8])}); images: {sizes}"

    def split_extras(self, split: str) -> dict:
        """splits.json keeps each image's mask and how masks are read (for --resume, evaluate and predict)."""
        return {"records": [self.records_[p] for p in self.splits_[split].inputs], "mask_spec": self.spec_}


@dataclass(frozen=True)
class SegPresize:
    """The cacheable decode stage: the image resized to ``size`` × ``size`` (bilinear) as uint8 (3, S, S)."""

    size: int

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()

    def mask(self, m: np.ndarray) -> torch.Tensor:
        """A class-index mask resized with nearest neighbour (class values never blend)."""
        return torch.from_numpy(np.array(Image.fromarray(m).resize((self.size, self.size), Image.NEAREST)))


class SegTransform:
    """``presize`` (cached) then mask-aware ``tensor_ops``. Called on one PIL image (``serve``): (image, its size)."""

    def __init__(self, presize: SegPresize, tensor_ops=None, train: bool = False):
        self.presize, self.tensor_ops, self.train = presize, tensor_ops, train

    def __call__(self, img: Image.Image):
        return self.presize(img), torch.tensor([img.height, img.width])

    def __repr__(self) -> str:
        return f"SegTransform({self.presize!r}, {self.tensor_ops!r}, train={self.train})"


def seg_ops(augment: str, size: int):
    """``none``: nothing; ``light``: horizontal flip; ``standard``: a random scale-crop (0.5–1 of the image, back to
    the training size), flip and colour jitter. Masks move with the pixels and resize with nearest neighbour."""
    from torchvision.transforms import v2  # heavy: loaded on first use

    if augment == "none":
        return None
    ops = [v2.RandomHorizontalFlip()]
    if augment == "standard":
        ops = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), *ops,
               v2.ColorJitter(0.3, 0.3, 0.3, 0.02)]
    return v2.Compose(ops)



class SegmentationDataset(torch.utils.data.Dataset):
    """Image ``i`` → (uint8 image at the training size, its mask at that size; 255 where it has none)."""

    def __init__(self, items: Items, records: dict[str, dict], spec: dict | None, transform: SegTransform,
                 held=None, progress=None):
        self.items, self.records, self.spec, self.transform = items, records, spec, transform
        self.held = held
        self.masks: list[torch.Tensor | None] = [None] * len(items)
        if spec is not None and held is not None:  # masks are small: held decoded beside the cached images
            for i, p in enumerate(items.inputs):
                if p in records:
                    self.masks[i] = transform.presize.mask(load_mask(records[p], spec))

    def __len__(self) -> int:
        return len(self.items)

    def orig_size(self, i: int) -> tuple[int, int]:
        w, h = upright_size(self.items.inputs[i])
        return h, w

    def __getitem__(self, i: int):
        from torchvision import tv_tensors  # heavy: loaded on first use

        path = self.items.inputs[i]
        img = self.held[i] if self.held is not None and self.held[i] is not None else \
            self.transform.presize(load_rgb(path))
        mask = self.masks[i]
        if mask is None:
            rec = self.records.get(path)
            mask = self.transform.presize.mask(load_mask(rec, self.spec)) if rec is not None and self.spec else \
                torch.full(img.shape[1:], IGNORE, dtype=torch.uint8)
        if self.transform.train and self.transform.tensor_ops is not None:
            img, mask = self.transform.tensor_ops(tv_tensors.Image(img), tv_tensors.Mask(mask))
            img, mask = img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        return img, mask.long()
