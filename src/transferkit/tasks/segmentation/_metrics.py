"""Segmentation metrics from the confusion matrix accumulated over every scored pixel (torchmetrics), 255 = ignore:
mIoU (the mean over classes present in truth or prediction — not the mean of per-image IoUs), per-class IoU and
Dice, pixel accuracy; jackknife pseudo-values per image for ``compare``'s intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._masks import IGNORE


def confusion(pred, truth, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = truth, columns = prediction; pixels marked 255 in ``truth`` left out."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix  # heavy: loaded on first use

    p, t = torch.as_tensor(np.asarray(pred)).long().reshape(-1), torch.as_tensor(np.asarray(truth)).long().reshape(-1)
    p = p.clamp_(0, num_classes - 1)
    return multiclass_confusion_matrix(p, t, num_classes, ignore_index=IGNORE, validate_args=False).numpy().astype(np.int64)


def scores(cm: np.ndarray) -> dict[str, Any]:
    """mIoU, per-class IoU and Dice (None for a class absent from truth and prediction), pixel accuracy."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = cm.sum()
    return {"miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
            "mdice": float(np.nanmean(dice)) if np.isfinite(dice).any() else 0.0,
            "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
            "iou": [None if np.isnan(v) else round(float(v), 4) for v in iou],
            "dice": [None if np.isnan(v) else round(float(v), 4) for v in dice]}


def segmentation_metrics(per_image: list[np.ndarray], labels: list[str]) -> dict[str, Any]:
    """Metrics of the evaluation split from each image's confusion matrix."""
    cm = np.sum(per_image, axis=0) if per_image else np.zeros((len(labels), len(labels)), np.int64)
    s = scores(cm)
    present = cm.sum(1)
    per_class = {name: {"iou": s["iou"][i], "dice": s["dice"][i], "pixels": int(present[i]),
                        "share": round(float(present[i] / max(cm.sum(), 1)), 4)} for i, name in enumerate(labels)}
    worst = min(((n, v["iou"]) for n, v in per_class.items() if v["iou"] is not None), key=lambda t: t[1],
                default=(None, None))
    return {"miou": s["miou"], "mdice": s["mdice"], "pixel_accuracy": s["pixel_accuracy"], "per_class": per_class,
            "weakest_class": {"name": worst[0], "iou": worst[1]}, "confusion_matrix": cm.tolist(),
            "n": len(per_image), "pixels": int(cm.sum())}


def jackknife(per_image: list[np.ndarray], metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per image, ``n·θ − (n−1)·θ₋ᵢ`` for each metric: pseudo-values whose mean is (about) the metric over all
    images, so the seeds × images intervals apply to pooled metrics such as mIoU."""
    n = len(per_image)
    if n < 2:
        return {}
    total = np.sum(per_image, axis=0)
    full = scores(total)
    out = {m: np.empty(n) for m in metrics}
    for i, cm in enumerate(per_image):
        loo = scores(total - cm)
        for m in metrics:
            out[m][i] = n * full[m] - (n - 1) * loo[m]
    return out
