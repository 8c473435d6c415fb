"""COCO instance annotations: ``images``, ``annotations`` (x, y, w, h boxes), ``categories``; numbers given as
strings, duplicate or missing ids and sizes that disagree with the file are listed or warned about."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...errors import DataError
from ._boxes import add_box, image_size, record

log = logging.getLogger("transferkit")


def find_coco_json(path: Path) -> Path:
    if path.is_file():
        return path
    found = [p for p in sorted(path.glob("*.json")) if looks_coco(p)]
    if len(found) != 1:
        raise DataError(f"{path} holds {len(found)} COCO annotation files", "exactly one JSON with 'images' and "
                        "'annotations'", "Pass the file itself: --annotations path/to/instances.json")
    return found[0]


def looks_coco(p: Path) -> bool:
    try:
        head = p.read_text(errors="ignore")[:4096]
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head or '"categories"' in head


def read_coco(path: Path, images: Path | None, problems: list) -> list[dict]:
    path = find_coco_json(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc})", "a COCO annotation file",
                        "Re-export the annotations") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise DataError(f"{path} is not a COCO annotation file", "a JSON object with 'images', 'annotations' "
                        "and 'categories' lists", "Export the annotations in COCO format")
    cats = {}
    for c in doc.get("categories") or []:
        if not isinstance(c, dict) or not _key(c.get("id")) or not str(c.get("name") or "").strip():
            problems.append((str(path), f"category {c!r} has no id or no name; its boxes are dropped"))
            continue
        cats[c["id"]] = str(c["name"]).strip()
    dirs = [d for d in (images, path.parent, path.parent / "images", path.parent / "JPEGImages") if d is not None]
    by_id, missing, resized = {}, set(), []
    ids = [im.get("id") if isinstance(im, dict) else None for im in doc["images"]]
    twice = {i for i in ids if _key(i) and ids.count(i) > 1}
    for im in doc["images"]:
        if not isinstance(im, dict) or not _key(im.get("id")):
            problems.append((str(path), f"image entry {str(im)[:60]!r} has no usable id; left out"))
            continue
        name = str(im.get("file_name", ""))
        if im["id"] in twice:
            problems.append((name or str(path), f"image id {im['id']!r} is used by {ids.count(im['id'])} images: "
                             "their boxes cannot be told apart; left out"))
            missing.add(im["id"])
            continue
        p = next((d / name for d in dirs if name and (d / name).is_file()), None)
        if p is None:
            problems.append((name or f"image id {im.get('id')}", f"image file not found (looked in {', '.join(map(str, dirs))})"))
            missing.add(im["id"])
            continue
        try:
            size = image_size(p)
        except OSError:
            size = (0, 0)  # the decode check lists it
        stated = (_number(im.get("width")), _number(im.get("height")))
        if all(stated) and size != (0, 0) and tuple(round(v) for v in stated) != size:
            resized.append(f"{p.name} ({stated[0]:g}×{stated[1]:g} vs {size[0]}×{size[1]})")
        by_id[im["id"]] = record(p, size)
    if resized:
        log.warning("%s: %d image(s) differ in size from their 'width'/'height' (e.g. %s); boxes are read in the "
                    "image's own pixels", path, len(resized), "; ".join(resized[:3]))
    for i, ann in enumerate(doc["annotations"]):
        where = f"{path} annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict):
            problems.append((where, "not a JSON object; dropped"))
            continue
        image_id = ann.get("image_id")
        rec = by_id.get(image_id) if _key(image_id) else None
        if rec is None:
            if not (_key(image_id) and image_id in missing):  # those were listed with their image
                problems.append((where, f"image_id {image_id!r} is not an image of 'images'; dropped"))
            continue
        if not _key(ann.get("category_id")) or ann.get("category_id") not in cats:
            problems.append((where, f"category_id {ann.get('category_id')!r} is not in 'categories'; dropped"))
            continue
        bb = ann.get("bbox")
        nums = [_number(v) for v in bb] if isinstance(bb, list) and len(bb) == 4 else None
        box = [nums[0], nums[1], nums[0] + nums[2], nums[1] + nums[3]] if nums and None not in nums else bb
        add_box(rec, box, cats[ann["category_id"]], _flag(ann.get("iscrowd", 0)), problems, where)
    return list(by_id.values())


def _key(v) -> bool:
    """An id a dict can hold (a number or a string; a list id is refused)."""
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _number(v) -> float | None:
    """A number given as a number or a numeric string (COCO exports hold both); None otherwise."""
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _flag(v) -> bool:
    """``iscrowd`` as 0/1, true/false or their strings ("0" is false)."""
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v)
