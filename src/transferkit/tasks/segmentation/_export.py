"""ONNX export of a segmentation run: the whole model on RGB images of any size — resized to the training size
inside, logits scaled back to the input's size — parity checked on real images against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..._onnx import export_traced
from ...data import load_rgb

OUTPUT = "logits (N, classes, H, W) at the input's size; argmax over classes is the mask"


class WholeImage(torch.nn.Module):
    """(N, 3, H, W) RGB with values 0–255, any H and W → logits at (H, W): the model at its training size."""

    def __init__(self, model, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return F.interpolate(self.model(x), size=images.shape[-2:], mode="bilinear", align_corners=False)


def image_tensor(path: str) -> torch.Tensor:
    return torch.from_numpy(np.array(load_rgb(path), dtype=np.uint8)).permute(2, 0, 1)[None].float()


def export_onnx(model, size: int, path: Path, meta: dict, inputs: list[str]) -> dict[str, Any]:
    """Write ``path`` and compare it with PyTorch on ``inputs`` (each at its own size): the share of pixels whose
    class agrees and the largest logit difference."""
    wrapped = WholeImage(model.eval(), size).eval()
    sess = export_traced(wrapped, (image_tensor(inputs[0]),), path, meta, ["image"], ["logits"],
                         {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}})
    same = total = 0
    diff = 0.0
    with torch.inference_mode():
        for inp in inputs:
            x = image_tensor(inp)
            ref = wrapped(x).numpy()
            got = sess.run(None, {"image": x.numpy()})[0]
            diff = max(diff, float(np.abs(ref - got).max()))
            same += int((ref.argmax(1) == got.argmax(1)).sum())
            total += ref.shape[0] * ref.shape[2] * ref.shape[3]
    return {"n": len(inputs), "equal_pixels": same / max(total, 1), "max_abs_diff": diff}
