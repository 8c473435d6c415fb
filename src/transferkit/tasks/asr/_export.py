"""ONNX export of a CTC run: encoder + CTC layer on one clip's features of any length → per-frame log-probabilities;
parity checked on real clips against PyTorch (greedy transcripts and the largest log-probability difference).
A Whisper-head run's decoding loop stays in PyTorch (``transferkit predict`` / ``serve``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import _runfolder as rf
from ..._onnx import export_traced
from ...errors import ConfigError


class OnnxCTC(torch.nn.Module):
    """(1, n_mels, frames) log-mel (or (1, samples) waveform) → (1, frames', symbols) log-probabilities."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model({"input": x, "lengths": torch.tensor([x.shape[-1]])})["log_probs"]


def export(pred, fmt: str, out_dir: Path, meta: dict, check_inputs) -> dict[str, Any] | None:
    if fmt == "safetensors":
        return None
    if pred.meta["head"] == "whisper":
        raise ConfigError("A Whisper-head run cannot be exported as ONNX here: its decoding loop (prompt, KV cache, "
                          "greedy search) stays in PyTorch", "a CTC-head run, or --format safetensors",
                          "Use `transferkit predict` or `transferkit serve` for this run, or --format safetensors")
    if fmt != "onnx":
        raise ConfigError(f"--format {fmt} is not available for speech recognition runs", "onnx or safetensors",
                          "Use --format onnx (encoder + CTC layer)")

    out_dir.mkdir(parents=True, exist_ok=True)
    rf.write_new(out_dir / "contract.json", json.dumps(meta, indent=2), "--out")
    wrapped = OnnxCTC(pred.model.eval()).eval()
    ds = pred._dataset(check_inputs())
    example = ds[0][0][None]
    path = out_dir / "model.onnx"
    sess = export_traced(wrapped, (example,), path, meta, ["features"], ["log_probs"],
                         {"features": {example.dim() - 1: "frames"}, "log_probs": {1: "out_frames"}})
    diff, same = 0.0, 0
    with torch.inference_mode():
        for i in range(len(ds)):
            x = ds[i][0][None]
            ref = wrapped(x).numpy()
            got = sess.run(None, {"features": x.numpy()})[0]
            diff = max(diff, float(np.abs(ref - got).max()))
            same += int((ref.argmax(-1) == got.argmax(-1)).all())
    return {"path": str(path), "format": fmt,
            "parity": {"n": len(ds), "max_abs_diff": diff, "same_greedy_path": same / max(1, len(ds))}}
