"""COCO instance annotations read once and checked entry by entry: a broken file is one error, a broken entry (an
image without ``id``, a category without ``id``, an annotation of an unknown image or category, an empty or 2-point
polygon, an RLE of another size than its image) is listed with its reason and left out, and the rest is used. Masks
are drawn from the checked annotations alone (pycocotools' RLE code), never from the raw file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import DataError


@dataclass
class CocoIndex:
    """The usable parts of one COCO file: images by id (``file_name``, ``height``, ``width``), categories in id order
    (``(id, name)``), annotations by image id, and what was left out (``(where, reason)``)."""

    images: dict = field(default_factory=dict)
    categories: list = field(default_factory=list)
    annotations: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def _int_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _segmentation_problem(seg, h: int | None, w: int | None) -> str | None:
    """Why an annotation's ``segmentation`` cannot be drawn, or None."""
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_int_id(v) is not None for v in size)):
            return f"RLE without a [height, width] size ({size!r})"
        if counts is None or not isinstance(counts, (list, str)):
            return "RLE without counts"
        if h and w and [int(size[0]), int(size[1])] != [h, w]:
            return f"RLE of size {size[1]}×{size[0]} on an image of {w}×{h}"
        return None
    if not isinstance(seg, list) or not seg:
        return "empty segmentation (no polygon and no RLE)"
    for poly in seg:
        if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly):
            return "a polygon that is not a list of numbers"
        if len(poly) < 6 or len(poly) % 2:
            return f"a polygon of {len(poly) // 2} point(s) (at least 3 x,y pairs draw an area)"
    return None


@lru_cache(maxsize=4)
def _cached(path: str, mtime: float, size: int) -> CocoIndex:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{p} is not a COCO annotation file ({type(exc).__name__}: {exc})",
                        "a JSON with images, annotations and categories", "Export the annotations as COCO JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or \
            not isinstance(doc.get("categories"), list):
        raise DataError(f"{p} is not a COCO annotation file (no images and categories lists)",
                        "a JSON with images, annotations and categories", "Export the annotations as COCO JSON")
    idx = CocoIndex()
    where = str(p)
    cats = {}
    for i, c in enumerate(doc["categories"]):
        cid = _int_id(c.get("id")) if isinstance(c, dict) else None
        if cid is None:
            idx.problems.append((f"{where}: categories[{i}]", f"category without a whole-number id ({c!r:.80}); "
                                 "its annotations are left out"))
            continue
        if cid in cats:
            raise DataError(f"{p}: category id {cid} appears twice", "one id per category", "Fix the categories list")
        cats[cid] = str(c.get("name", cid))
    idx.categories = sorted(cats.items())
    for i, im in enumerate(doc["images"]):
        iid = _int_id(im.get("id")) if isinstance(im, dict) else None
        if iid is None:
            idx.problems.append((f"{where}: images[{i}]", f"image entry without a whole-number id ({im!r:.80})"))
            continue
        if iid in idx.images:
            idx.problems.append((where, f"image id {iid} appears twice; the second is left out"))
            continue
        h, w = _int_id(im.get("height")), _int_id(im.get("width"))
        idx.images[iid] = {"file_name": str(im.get("file_name", "")), "height": h, "width": w}
    for i, a in enumerate(doc.get("annotations") or []):
        if not isinstance(a, dict):
            idx.problems.append((f"{where}: annotations[{i}]", "not an annotation object"))
            continue
        iid, cid = _int_id(a.get("image_id")), _int_id(a.get("category_id"))
        label = f"{where}: annotation {a.get('id', i)}"
        if iid not in idx.images:
            idx.problems.append((label, f"names image {a.get('image_id')!r}, which the file does not list"))
            continue
        if cid not in cats:
            idx.problems.append((label, f"names category {a.get('category_id')!r}, which the file does not list"))
            continue
        im = idx.images[iid]
        reason = _segmentation_problem(a.get("segmentation"), im["height"], im["width"])
        if reason:
            idx.problems.append((label, reason))
            continue
        idx.annotations.setdefault(iid, []).append({"category_id": cid, "segmentation": a["segmentation"],
                                                    "area": float(a.get("area") or 0)})
    return idx


def coco_index(path: str | Path) -> CocoIndex:
    """The checked content of a COCO file (read once per version of the file)."""
    st = Path(path).stat()
    return _cached(str(path), st.st_mtime, st.st_size)


def coco_mask(path: str | Path, image_id: int, size: tuple[int, int]) -> np.ndarray:
    """One image's class-index mask (categories numbered 1… in id order, 0 = background): larger regions drawn first,
    so smaller objects drawn later stay visible. ``size`` (w, h) where the file gives none."""
    from pycocotools import mask as cocomask  # optional heavy import: only COCO masks need it

    idx = coco_index(path)
    order = {cid: i + 1 for i, (cid, _) in enumerate(idx.categories)}
    info = idx.images[image_id]
    h, w = int(info["height"] or size[1]), int(info["width"] or size[0])
    out = np.zeros((h, w), np.uint8 if len(order) < 255 else np.int64)
    for ann in sorted(idx.annotations.get(image_id, []), key=lambda a: -a["area"]):
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            rle = cocomask.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else \
                {"size": seg["size"], "counts": seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]}
        else:
            rle = cocomask.merge(cocomask.frPyObjects(seg, h, w))
        out[cocomask.decode(rle) > 0] = order[ann["category_id"]]
    return out
