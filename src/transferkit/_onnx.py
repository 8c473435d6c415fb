"""Writing ONNX files: the exporter's output, with the run's contract as metadata, moved into place."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import torch

from .errors import TransferkitError


def require_onnx() -> None:
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        raise TransferkitError("ONNX export needs onnx and onnxruntime", None, "pip install 'transferkit[export]'")


def export_traced(module, example: tuple, path: Path, meta: dict, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict):
    """Export ``module`` with the TorchScript tracer on ``example`` (opset 17) to ``path``, ``meta`` as metadata;
    returns an onnxruntime session on the file, for the parity check."""
    require_onnx()
    import onnxruntime as ort  # optional (export extra)

    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic, which it exports correctly
        torch.onnx.export(module, example, str(tmp), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
    save_with_metadata(tmp, path, meta)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def save_with_metadata(tmp: Path, path: Path, meta: dict) -> None:
    """Copy the model the exporter wrote to ``tmp`` into ``path`` with ``meta`` (JSON values) as metadata_props, then
    remove ``tmp`` and any external-data files beside it."""
    import onnx  # optional (export extra)

    proto = onnx.load(str(tmp))
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v)
    onnx.save(proto, str(path))
    tmp.unlink(missing_ok=True)
    for extra in path.parent.glob(tmp.name + "*.data"):
        extra.unlink()
