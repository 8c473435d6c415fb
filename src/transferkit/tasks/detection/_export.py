"""ONNX export of a detection run: the whole detector, torchvision's resize, NMS and box rescaling included, on one
RGB image of any size; parity checked on real images against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._onnx import export_traced
from ...data import load_rgb

OUTPUT = ("boxes (x1 y1 x2 y2 in the input image's pixels), scores, labels (1-based into 'labels'), after NMS; "
          "every score ≥ 0.05 (apply score_threshold)")


class OnnxDetector(torch.nn.Module):
    """One float image (3, H, W) in [0, 1] → (boxes, scores, labels): the detector's own eval path, unbatched."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor):
        d = self.detector
        batch, _ = d.transform([image])
        feats = d.features(batch.tensors)
        proposals, _ = d.head["rpn"](batch, feats)
        dets, _ = d.head["roi_heads"](feats, proposals, batch.image_sizes)
        out = d.transform.postprocess(dets, batch.image_sizes, [image.shape[-2:]])[0]
        return out["boxes"], out["scores"], out["labels"]


def image_tensor(path: str) -> torch.Tensor:
    return torch.from_numpy(np.array(load_rgb(path), dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def export_onnx(model, path: Path, meta: dict, inputs: list[str]) -> dict[str, Any]:
    """Write ``path`` (with ``meta`` as metadata) and compare it with PyTorch on ``inputs``."""
    wrapped = OnnxDetector(model.eval()).eval()
    sess = export_traced(wrapped, (image_tensor(inputs[0]),), path, meta, ["image"], ["boxes", "scores", "labels"],
                         {"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"}, "labels": {0: "n"}})
    box_diff, score_diff, same = 0.0, 0.0, 0
    with torch.inference_mode():
        for inp in inputs:
            x = image_tensor(inp)
            ref = [t.numpy() for t in wrapped(x)]
            got = sess.run(None, {"image": x.numpy()})
            if ref[0].shape == got[0].shape and (ref[2] == got[2]).all():
                same += 1
                if len(ref[0]):
                    box_diff = max(box_diff, float(np.abs(ref[0] - got[0]).max()))
                    score_diff = max(score_diff, float(np.abs(ref[1] - got[1]).max()))
    return {"n": len(inputs), "same_detections": same / max(len(inputs), 1), "max_box_diff_px": box_diff,
            "max_score_diff": score_diff}
