"""One record per image — ``{path, width, height, boxes (x1 y1 x2 y2, upright pixels), labels, ignore}`` — and the
checks every box goes through, whatever layout it came from."""

from __future__ import annotations

import math
from pathlib import Path

from ...data import upright_size


def record(path: Path, size: tuple[int, int] | None) -> dict:
    width, height = size or image_size(path)
    return {"path": str(path), "width": int(width), "height": int(height), "boxes": [], "labels": [], "ignore": []}


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) upright: boxes are read in the frame the decoder, drawing and export see."""
    return upright_size(path)


def add_box(rec: dict, box, label: str, ignore: bool, problems: list, where: str) -> None:
    """Append one box after checking it: NaN, empty (x2 ≤ x1) or wholly outside → listed and dropped; partly
    outside → clipped to the image."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        problems.append((where, f"box {box!r} is not four numbers"))
        return
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        problems.append((where, f"box {box!r} has a NaN or infinite coordinate; dropped"))
        return
    if x2 <= x1 or y2 <= y1:
        problems.append((where, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has x2 ≤ x1 or y2 ≤ y1; dropped"))
        return
    w, h = rec["width"], rec["height"]
    c = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
    if c[2] - c[0] < 1 or c[3] - c[1] < 1:
        problems.append((where, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {w}×{h} image; dropped"))
        return
    rec["boxes"].append([round(v, 2) for v in c])
    rec["labels"].append(str(label).strip())
    rec["ignore"].append(bool(ignore))
