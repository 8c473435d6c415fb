"""Export a finished run to ONNX, TorchScript or safetensors, and check parity with PyTorch."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _runfolder as rf
from ._onnx import require_onnx, save_with_metadata
from .errors import TransferkitError
from .predict import Predictor

log = logging.getLogger("transferkit")
FORMATS = ("onnx", "torchscript", "safetensors")


def contract(pred: Predictor) -> dict[str, Any]:
    """What a consumer needs besides the weights: the modality's preprocessing, and the labels."""
    return {"labels": pred.labels, "task": pred.task.name, "modality": pred.modality.name,
            **pred.inputs.contract(pred.meta["data_config"]),
            "output": pred.task.output_help}


def export(run: str | Path, fmt: str = "onnx", out: str | Path | None = None, check: str | Path | None = None,
           max_check: int = 64) -> dict[str, Any]:
    """Write ``model.<ext>`` into ``out`` (default: RUN/export/) and check it against PyTorch.

    Returns:
        ``{"path", "format", "parity": {"n", "max_abs_diff", "top1_agreement"} or None}``
    """
    if fmt not in FORMATS:
        raise TransferkitError(f"Unknown export format '{fmt}'", f"one of {', '.join(FORMATS)}")
    if max_check < 1:
        raise TransferkitError(f"--max-check {max_check} checks nothing", "at least 1 input for the parity check")
    out_dir = Path(out) if out else Path(run) / "export"
    if out_dir.exists() and not out_dir.is_dir():
        raise TransferkitError(f"--out {out_dir} is a file", "a folder for the exported model", "Choose a folder")
    if out_dir.resolve() == Path(run).resolve():
        raise TransferkitError(f"--out {out_dir} is the run folder itself", "a separate folder (default RUN/export)",
                               "Leave --out out, or choose another folder")
    model_file = out_dir / {"onnx": "model.onnx", "torchscript": "model.pt", "safetensors": "model.safetensors"}[fmt]
    if model_file.exists():
        raise TransferkitError(f"--out {out_dir} already holds {model_file.name}", "a folder without an exported model "
                               "of this format (an export never writes over a file it did not make)",
                               f"Remove {model_file}, or choose another --out folder")
    pred = Predictor(run, device="cpu")
    own = pred.task.export(pred, fmt, out_dir, contract(pred), lambda: _check_inputs(pred, run, check, max_check))
    if own is not None:
        return own
    example = pred.inputs.example_input(pred.meta["data_config"])
    if example is None and fmt != "safetensors":
        raise TransferkitError(f"--format {fmt} is not available for this run ({pred.task.name} on "
                               f"{pred.modality.name} inputs)",
                               "a run whose model takes one tensor", "Use --format safetensors (weights + tokenizer + contract)")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = pred.model.eval()
    meta = contract(pred)
    if fmt == "onnx":
        path = out_dir / "model.onnx"
        _export_onnx(model, example, path, meta)
    elif fmt == "torchscript":
        path = out_dir / "model.pt"
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        rf.atomic_write(path, lambda p: torch.jit.save(traced, str(p), _extra_files={"contract.json": json.dumps(meta)}))
    else:
        path = out_dir / "model.safetensors"
        shutil.copy2(Path(run) / rf.WEIGHTS, path)
        rf.write_new(out_dir / rf.MODEL_META, (Path(run) / rf.MODEL_META).read_bytes(), "--out")
        if (Path(run) / "backbone").is_dir():
            if (out_dir / "backbone").exists():
                raise TransferkitError(f"--out {out_dir} already holds backbone/", "a folder without it",
                                       f"Remove {out_dir / 'backbone'}, or choose another --out folder")
            shutil.copytree(Path(run) / "backbone", out_dir / "backbone")
    rf.write_new(out_dir / "contract.json", json.dumps(meta, indent=2), "--out")
    parity = None
    if fmt in ("onnx", "torchscript"):
        parity = check_parity(pred, path, fmt, _check_inputs(pred, run, check, max_check))
    return {"path": str(path), "format": fmt, "parity": parity}


def _export_onnx(model, example, path: Path, meta: dict) -> None:
    require_onnx()
    tmp = path.with_suffix(".tmp.onnx")
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    save_with_metadata(tmp, path, meta)


def _check_inputs(pred: Predictor, run, check, max_check: int) -> list[str]:
    if check is not None:
        return pred.modality.expand_inputs([str(check)])[:max_check]
    split, inputs, _ = rf.evaluation_split(Path(run))
    if pred.modality.inputs_are_files:  # the data may have moved since training
        present = [i for i in inputs if Path(i).is_file()]
        if not present:
            raise TransferkitError(f"None of the run's {len(inputs)} {split} files exist any more (e.g. {inputs[0]})",
                                   "real inputs for the parity check", "Pass some with --check FILE_OR_FOLDER")
        if len(present) < len(inputs):
            log.warning("%d of the run's %s files are gone; checking parity on the others", len(inputs) - len(present),
                        split)
        inputs = present
    return inputs[:max_check]


def check_parity(pred: Predictor, path: Path, fmt: str, inputs: list[str], batch_size: int = 16) -> dict[str, Any]:
    """Run the exported model and PyTorch on the same real inputs; compare logits and top-1."""
    ds = pred._dataset(inputs)
    ref, got = [], []
    if fmt == "onnx":
        import onnxruntime as ort  # optional (export extra)

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run_exported = lambda x: sess.run(None, {"input": x.numpy()})[0]  # noqa: E731
    else:
        loaded = torch.jit.load(str(path))
        run_exported = lambda x: loaded(x).detach().numpy()  # noqa: E731
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size)
    with torch.no_grad():
        for x, _ in loader:
            ref.append(pred.model(x).numpy())
            got.append(run_exported(x))
    ref_a, got_a = np.concatenate(ref), np.concatenate(got)
    return {"n": len(ref_a), "max_abs_diff": float(np.abs(ref_a - got_a).max()),
            "top1_agreement": float((ref_a.argmax(1) == got_a.argmax(1)).mean())}
