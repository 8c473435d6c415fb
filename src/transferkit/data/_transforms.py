"""Preprocessing from the backbone's pretrained config, and augmentation presets.

Every image transform here runs in two stages:

1. ``Presize``: decode-time work done once per image — resize the short side and store the result as a
   uint8 (3, H, W) tensor. It is deterministic, so its output can be cached (``ImageCache``).
2. tensor ops: the random crop / flip / colour augmentation (or the centre crop), then scaling to
   float and normalising, on the small uint8 tensor.

``ImageTransform`` chains both and is callable on a PIL image, so cached and uncached inputs give
identical tensors. The eval pipeline is timm's (resize short side to size / crop_pct, centre crop),
bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

_INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
           "nearest": T.InterpolationMode.NEAREST}
# Smallest crop area (fraction of the image) of each augmentation preset.
_MIN_SCALE = {"light": 0.5, "standard": 0.25}


def resolve_data_config(pretrained: dict[str, Any], image_size: int | None = None) -> dict[str, Any]:
    """Input size, mean, std, crop and interpolation: the backbone's, with an optional size override."""
    size = int(image_size or pretrained.get("input_size", (3, 224, 224))[-1])
    return {
        "input_size": [3, size, size],
        "mean": [float(m) for m in pretrained.get("mean", (0.485, 0.456, 0.406))],
        "std": [float(s) for s in pretrained.get("std", (0.229, 0.224, 0.225))],
        "crop_pct": float(pretrained.get("crop_pct", 0.875)),
        "interpolation": pretrained.get("interpolation", "bilinear") if pretrained.get("interpolation") in _INTERP else "bilinear",
    }


@dataclass(frozen=True)
class Presize:
    """Resize the short side to ``short_side`` (only ever down if ``shrink_only``) → uint8 (3, H, W)."""

    short_side: int
    interpolation: str
    shrink_only: bool = False

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if not (self.shrink_only and min(img.size) <= self.short_side):
            img = TF.resize(img, self.short_side, interpolation=_INTERP[self.interpolation])  # timm's eval resize
        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


class ToFloat(torch.nn.Module):
    """uint8 [0, 255] → float32 [0, 1], the same arithmetic as ``ToTensor``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=torch.float32).div(255)


class ImageTransform:
    """``presize`` (cacheable, once per image) then ``tensor_ops`` (per use); callable on a PIL image."""

    def __init__(self, presize: Presize, tensor_ops: T.Compose):
        self.presize = presize
        self.tensor_ops = tensor_ops

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.tensor_ops(self.presize(img))

    def __repr__(self) -> str:
        return f"ImageTransform({self.presize!r}, {self.tensor_ops!r})"


def _finish(dc: dict[str, Any]) -> list:
    return [ToFloat(), T.Normalize(dc["mean"], dc["std"])]


def eval_transform(dc: dict[str, Any]) -> ImageTransform:
    """Resize the short side to size / crop_pct, centre-crop, normalise (timm's eval pipeline)."""
    size = dc["input_size"][-1]
    presize = Presize(int(math.floor(size / dc["crop_pct"])), dc["interpolation"])
    return ImageTransform(presize, T.Compose([T.CenterCrop(size), *_finish(dc)]))


def train_transform(dc: dict[str, Any], augment: str) -> ImageTransform:
    """Augmentation presets: ``none`` (the eval pipeline), ``light``, ``standard``.

    The presize keeps enough pixels that the smallest random crop is not upsampled:
    short side size / sqrt(min crop area), and never enlarges an image.
    """
    if augment == "none":
        return eval_transform(dc)
    size = dc["input_size"][-1]
    interp = _INTERP[dc["interpolation"]]
    scale = (_MIN_SCALE[augment], 1.0)
    presize = Presize(int(math.ceil(size / math.sqrt(scale[0]))), dc["interpolation"], shrink_only=True)
    ops = [T.RandomResizedCrop(size, scale=scale, interpolation=interp, antialias=True), T.RandomHorizontalFlip()]
    if augment == "standard":
        ops += [T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR), T.ColorJitter(0.2, 0.2, 0.2, 0.02)]
    return ImageTransform(presize, T.Compose(ops + _finish(dc)))
