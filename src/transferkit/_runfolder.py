"""The run folder: file names, atomic writes, and reading a finished model back."""

from __future__ import annotations

import csv
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import ConfigError, RunFolderError, TransferkitError

CONFIG = "config.yaml"
LABELS = "labels.json"
MODEL_META = "model.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
LOG = "train.log"
BAD_FILES = "bad_files.txt"
PREDICTIONS = "predictions.csv"
REPORT = "report.html"
SPLITS = "splits.json"


def read_splits(run_dir: Path) -> dict[str, Any]:
    """A run's saved split (``splits.json``: per split its inputs, labels and what the task or grouping added);
    empty if the run folder has none."""
    path = Path(run_dir) / SPLITS
    return json.loads(path.read_text()) if path.is_file() else {}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: the old file survives any failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run folder is shared like any other file
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TransferkitError(f"No space left on the device while writing {path}",
                                   None, f"Free some disk space; the previous {path.name} is intact") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=_jsonable)))


def write_rows(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None) -> None:
    """A CSV of ``rows`` (columns: ``header``, else the first row's keys; a header line even without rows)."""
    fields = header or (list(rows[0]) if rows else [])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if fields:
            w.writeheader()
        w.writerows(rows)


def output_dir(path: Path, flag: str) -> Path:
    """A folder for files a command writes (made if missing); a file of that name is refused."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file", "a folder for the written files (made if missing)",
                               "Name a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_path(out_dir: Path, name: str, taken: set[Path]) -> Path:
    """``out_dir/name``, or ``<stem>-1``, ``-2`` … where that path is ``taken`` (an input, an earlier output of this
    call) or already exists (a file this call did not make: a user's ground-truth mask, an earlier prediction); the
    path returned is added to ``taken``. Never over an input or any existing file, never two outputs in one file."""
    stem, suffix = Path(name).stem, Path(name).suffix
    path, k = out_dir / name, 0
    while path.resolve() in taken or path.exists() or path.is_symlink():
        k += 1
        path = out_dir / f"{stem}-{k}{suffix}"
    taken.add(path.resolve())
    return path


def write_new(path: Path, data: bytes | str, flag: str) -> None:
    """Write ``path``, which must not exist (or already hold exactly ``data``): a command never writes over a file
    it did not create in this call."""
    data = data.encode() if isinstance(data, str) else data
    if path.exists() or path.is_symlink():
        if path.is_file() and path.read_bytes() == data:
            return
        raise ConfigError(f"{flag} {path.parent}: {path.name} is already there", "a folder without that file",
                          f"Remove {path}, or choose another {flag} folder")
    path.write_bytes(data)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_model(run_dir: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file  # loaded on first use

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / WEIGHTS, lambda p: save_file(state, str(p)))
    write_json(run_dir / MODEL_META, meta)


def check_run_dir(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a folder", "a run folder written by `transferkit train`",
                             "Pass the folder printed at the end of training (e.g. runs/<name>)")
    if not (path / CONFIG).is_file() and not (path / MODEL_META).is_file():
        if (path / CHECKPOINT).is_file():
            raise RunFolderError(f"{path} has {CHECKPOINT} but no {CONFIG}: its settings were removed",
                                 f"the {CONFIG} training wrote beside the checkpoint",
                                 "Put config.yaml back, or start the run again")
        raise RunFolderError(f"{path} is not a transferkit run folder (no {CONFIG} or {MODEL_META})",
                             "a run folder written by `transferkit train`",
                             "Pass the folder printed at the end of training (e.g. runs/<name>)")
    return path


def read_model(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (model.json, state dict) of a finished run, with clear errors for broken folders."""
    path = check_run_dir(path)
    for name in (MODEL_META, WEIGHTS):
        if not (path / name).is_file():
            raise RunFolderError(f"Run folder {path} has no {name}: the run did not finish or the file was removed",
                                 f"{name} in the run folder",
                                 f"Resume it with `transferkit train --resume {path}` or train again")
    try:
        meta = json.loads((path / MODEL_META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunFolderError(f"{path / MODEL_META} is damaged", "valid JSON", "Train the run again") from None
    missing = [k for k in ("backbone", "pretrained_cfg", "data_config", "head", "labels") if k not in meta]
    if not isinstance(meta, dict) or missing:
        raise RunFolderError(f"{path / MODEL_META} lacks {', '.join(missing) or 'its keys'}",
                             "the model.json that training wrote", "Train the run again") from None
    from safetensors.torch import load_file  # loaded on first use

    try:
        state = load_file(str(path / WEIGHTS))
    except Exception as exc:
        raise RunFolderError(f"{path / WEIGHTS} is damaged ({exc})", None, "Train the run again") from None
    return meta, state


def evaluation_split(path: Path) -> tuple[str, list[str], list[int]]:
    """(name, inputs, labels) of the split a finished run reported its metrics on (``splits.json``)."""
    path = Path(path)
    split = json.loads((path / METRICS).read_text())["split"] if (path / METRICS).is_file() else "test"
    saved = read_splits(path)[split]
    return split, saved["inputs"], saved["labels"]

