"""Preprocessing from the backbone's pretrained config, and augmentation presets."""

from __future__ import annotations

import math
from typing import Any

from torchvision import transforms as T

_INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
           "nearest": T.InterpolationMode.NEAREST}


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


def eval_transform(dc: dict[str, Any]) -> T.Compose:
    """Resize the short side to size / crop_pct, centre-crop, normalise (timm's eval pipeline)."""
    size = dc["input_size"][-1]
    interp = _INTERP[dc["interpolation"]]
    return T.Compose([
        T.Resize(int(math.floor(size / dc["crop_pct"])), interpolation=interp),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(dc["mean"], dc["std"]),
    ])


def train_transform(dc: dict[str, Any], augment: str) -> T.Compose:
    """Augmentation presets: ``none`` (the eval pipeline), ``light``, ``standard``."""
    if augment == "none":
        return eval_transform(dc)
    size = dc["input_size"][-1]
    interp = _INTERP[dc["interpolation"]]
    if augment == "light":
        ops = [T.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=interp), T.RandomHorizontalFlip()]
    else:  # standard
        ops = [T.RandomResizedCrop(size, scale=(0.25, 1.0), interpolation=interp), T.RandomHorizontalFlip(),
               T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR),
               T.ColorJitter(0.2, 0.2, 0.2, 0.02)]
    return T.Compose(ops + [T.ToTensor(), T.Normalize(dc["mean"], dc["std"])])
