"""Detection metrics through torchmetrics' ``MeanAveragePrecision`` (pycocotools backend): COCO mAP@[.5:.95],
mAP@.5, mAP@.75, AR@100, per-class AP and precision–recall curves; plus true / false positives and missed objects
at a score threshold (greedy matching at IoU 0.5, the VOC rule). Ignored boxes (VOC ``difficult``, COCO
``iscrowd``) are passed as crowd regions: a detection on one is neither right nor wrong."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


def _tensors(dets: list[dict], gts: list[dict]):
    preds = [{"boxes": torch.as_tensor(np.asarray(d["boxes"], dtype=np.float32).reshape(-1, 4)),
              "scores": torch.as_tensor(np.asarray(d["scores"], dtype=np.float32)),
              "labels": torch.as_tensor(np.asarray(d["labels"], dtype=np.int64))} for d in dets]
    target = [{"boxes": torch.as_tensor(np.asarray(g["boxes"], dtype=np.float32).reshape(-1, 4)),
               "labels": torch.as_tensor(np.asarray(g["labels"], dtype=np.int64)),
               "iscrowd": torch.as_tensor(np.asarray(g["ignore"], dtype=np.int64))} for g in gts]
    return preds, target


def mean_ap(dets: list[dict], gts: list[dict], extended: bool = False, sync: bool = False) -> dict[str, Any]:
    """COCO metrics over images; ``dets``/``gts`` hold boxes (x1 y1 x2 y2) and 1-based labels per image. With
    ``sync`` (every process calls it, each with its share) the images of all processes are scored together."""
    from torchmetrics.detection import MeanAveragePrecision  # heavy: loaded on first use

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=extended,
                                  extended_summary=extended, backend="pycocotools",
                                  sync_on_compute=sync)
    preds, target = _tensors(dets, gts)
    metric.update(preds, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no ground truth / predictions" notices for empty classes
        return metric.compute()


def headline(result: dict) -> dict[str, float]:
    return {"map": float(result["map"]), "map_50": float(result["map_50"]), "map_75": float(result["map_75"]),
            "mar_100": float(result["mar_100"])}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou as iou  # heavy: loaded on first use

    return iou(torch.as_tensor(a, dtype=torch.float32).reshape(-1, 4), torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)).numpy()


def match(det: dict, gt: dict, threshold: float, iou_min: float = 0.5) -> dict[str, list]:
    """Greedy, highest score first, per class: each detection above ``threshold`` is a true positive (it claims an
    unclaimed box of its class at IoU ≥ ``iou_min``), ignored (it overlaps an ignored box) or a false positive;
    unclaimed, not-ignored boxes are missed."""
    keep = [i for i, s in enumerate(det["scores"]) if s >= threshold]
    keep.sort(key=lambda i: -det["scores"][i])
    boxes, labels = np.asarray(gt["boxes"], dtype=np.float32).reshape(-1, 4), list(gt["labels"])
    ious = box_iou(np.asarray(det["boxes"], dtype=np.float32).reshape(-1, 4)[keep], boxes) if keep else np.zeros((0, len(labels)))
    claimed, out = set(), {"tp": [], "fp": [], "ignored": [], "missed": []}
    for row, i in enumerate(keep):
        cands = [j for j in range(len(labels)) if labels[j] == det["labels"][i] and ious[row, j] >= iou_min]
        free = [j for j in cands if j not in claimed and not gt["ignore"][j]]
        if free:
            claimed.add(max(free, key=lambda j: ious[row, j]))
            out["tp"].append(i)
        elif any(gt["ignore"][j] for j in cands):
            out["ignored"].append(i)
        else:
            out["fp"].append(i)
    out["missed"] = [j for j in range(len(labels)) if j not in claimed and not gt["ignore"][j]]
    return out


def detection_metrics(dets: list[dict], gts: list[dict], classes: list[str], threshold: float) -> dict[str, Any]:
    """metrics.json's numbers: the COCO summary, per-class AP / AP@.5 and precision–recall at IoU .5, and the
    counts at ``threshold``."""
    r = mean_ap(dets, gts, extended=True)
    out: dict[str, Any] = headline(r)
    per_class, curves = {}, {}
    ids = [int(c) for c in torch.atleast_1d(r["classes"]).tolist()]
    ap = torch.atleast_1d(r["map_per_class"]).tolist()
    precision = r.get("precision")  # (IoU thresholds, 101 recall points, classes, areas, max dets)
    for k, cid in enumerate(ids):
        if not 1 <= cid <= len(classes):
            continue
        name = classes[cid - 1]
        p = precision[0, :, k, 0, -1].numpy() if precision is not None and precision.ndim == 5 else np.array([])
        ap50 = float(p[p >= 0].mean()) if (p >= 0).any() else -1.0
        per_class[name] = {"ap": float(ap[k]), "ap_50": ap50,
                           "boxes": int(sum(sum(1 for lab, ig in zip(g["labels"], g["ignore"]) if lab == cid and not ig)
                                            for g in gts))}
        curves[name] = [round(float(v), 4) for v in p]
    counts = {"tp": 0, "fp": 0, "missed": 0, "ignored": 0}
    for d, g in zip(dets, gts):
        m = match(d, g, threshold)
        for key in counts:
            counts[key] += len(m[key])
    out.update(per_class=per_class, pr_curves=curves, score_threshold=threshold, counts=counts,
               n=len(gts), objects=int(sum(len(g["labels"]) - sum(g["ignore"]) for g in gts)),
               ignored_objects=int(sum(sum(g["ignore"]) for g in gts)),
               background_images=int(sum(not g["labels"] for g in gts)))
    return out


def jackknife(dets: list[dict], gts: list[dict], keys=("map", "map_50")) -> dict[str, np.ndarray]:
    """Per-image pseudo-values n·θ − (n−1)·θ₋ᵢ of each metric: their mean is the metric and their spread its
    standard error, so ``compare``'s paired intervals work for mAP as for accuracy."""
    n = len(gts)
    full = headline(mean_ap(dets, gts))
    out = {k: np.full(n, full[k]) for k in keys}
    if n < 3:
        return out
    for i in range(n):
        loo = headline(mean_ap(dets[:i] + dets[i + 1:], gts[:i] + gts[i + 1:]))
        for k in keys:
            out[k][i] = n * full[k] - (n - 1) * loo[k]
    return out
