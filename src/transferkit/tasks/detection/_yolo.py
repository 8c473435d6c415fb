"""YOLO: ``data.yaml`` (``path``, ``train``/``val``/``test`` folders or lists, ``names`` as a list or an id → name
mapping) and ``labels/*.txt`` beside ``images/`` (class cx cy w h, relative)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ...data import IMAGE_EXTENSIONS, SPLIT_ALIASES
from ...errors import DataError
from ._boxes import add_box, record


def read_yolo(yaml_path: Path, problems: list) -> dict[str, list[dict]]:
    try:
        doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{yaml_path} does not parse as YAML ({exc})", "a YOLO data.yaml", "Fix the file") from None
    if not isinstance(doc, dict):
        raise DataError(f"{yaml_path} holds a {type(doc).__name__}, not a mapping", "a YOLO data.yaml with path, "
                        "train, val and names entries", "Fix the file")
    names = yolo_names(doc.get("names"), yaml_path)
    base = Path(str(doc.get("path") or yaml_path.parent))
    base = base if base.is_absolute() else yaml_path.parent / base
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for key, entry in doc.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None or not entry:
            continue
        for e in entry if isinstance(entry, list) else [entry]:
            src = _yolo_path(base, str(e))
            if not src.exists():
                problems.append((str(src), f"data.yaml's {key}: {e} does not exist; its images are left out"))
                continue
            if src.is_file():
                listed = [Path(line.strip()) for line in src.read_text().splitlines() if line.strip()]
                files = [f if f.is_absolute() else _yolo_path(base, str(f)) for f in listed]
                for f in files:
                    if not f.is_file():
                        problems.append((str(f), f"listed in {src.name} but missing; left out"))
            else:
                files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            out[split] += [_yolo_record(f, names, problems) for f in files if f.is_file()]
    if not out["train"]:
        raise DataError(f"{yaml_path} lists no training images", "train: images/train (a folder or a .txt of paths)",
                        "Check the 'path' and 'train' entries")
    return out


def _yolo_path(base: Path, entry: str) -> Path:
    """A data.yaml path: relative to ``path`` (else the yaml's folder); Roboflow's ``../train/images`` is tried
    without its ``../`` when it does not exist, as Ultralytics does."""
    p = Path(entry) if Path(entry).is_absolute() else base / entry
    if not p.exists() and entry.startswith("../"):
        p = base / entry[3:]
    return p


def yolo_names(names, where: Path) -> dict[int, str]:
    """Class id → name from a list, or a dict whose keys are ids (ints or digit strings; gaps allowed)."""
    if isinstance(names, list) and names:
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict) and names:
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            pass
    raise DataError(f"{where} has no usable 'names' (got {str(names)[:60]!r})", "names: [class0, class1, …] or "
                    "{0: class0, 1: class1, …}", "Add the class names")


def _yolo_record(img: Path, names: dict[int, str], problems: list) -> dict:
    parts = list(img.parts)
    idx = max((i for i, s in enumerate(parts) if s == "images"), default=None)
    label = Path(*parts[:idx], "labels", *parts[idx + 1:]).with_suffix(".txt") if idx is not None else img.with_suffix(".txt")
    try:
        rec = record(img, None)
    except OSError:
        rec = {"path": str(img), "width": 0, "height": 0, "boxes": [], "labels": [], "ignore": []}
    if not label.is_file():
        return rec  # YOLO's convention: no label file = an image without objects
    for n, line in enumerate(label.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        where = f"{label}:{n}"
        if not fields:
            continue
        try:
            c, cx, cy, w, h = int(fields[0]), *map(float, fields[1:5])
        except (ValueError, IndexError):
            problems.append((where, f"expected 'class cx cy w h', got {line.strip()[:60]!r}; dropped"))
            continue
        if c not in names:
            problems.append((where, f"class {c} is not in data.yaml's {len(names)} names; dropped"))
            continue
        W, H = rec["width"], rec["height"]
        add_box(rec, [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H], str(names[c]),
                False, problems, where)
    return rec
