"""Writing ONNX files: the exporter's output, with the run's contract as metadata, moved into place."""

from __future__ import annotations

import json
from pathlib import Path


def save_with_metadata(tmp: Path, path: Path, meta: dict) -> None:
    """Copy the model the exporter wrote to ``tmp`` into ``path`` with ``meta`` (JSON values) as metadata_props, then
    remove ``tmp`` and any external-data files beside it."""
    import onnx

    proto = onnx.load(str(tmp))
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v)
    onnx.save(proto, str(path))
    tmp.unlink(missing_ok=True)
    for extra in path.parent.glob(tmp.name + "*.data"):
        extra.unlink()
