"""Reading masks as class indices: index PNGs (8 or 16 bit), palette PNGs (the palette index is the class), 0/255
masks (background / foreground), RGB colour masks with a colour table, COCO polygons or RLE; 255 = ignore. JPEG
masks are lossy — class values smear at region edges — so their pixels are snapped to the nearest valid value and
the run says how many changed. :func:`scan` reads every mask once and lists the unusable with the reason."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ...data import open_image, upright_size

log = logging.getLogger("transferkit")
IGNORE = 255
JPEG = (".jpg", ".jpeg", ".jfif")


class MaskError(ValueError):
    """A mask that cannot be used, with the reason."""


def is_jpeg(rec: dict) -> bool:
    return Path(rec.get("mask", "")).suffix.lower() in JPEG


@lru_cache(maxsize=4)
def _coco(path: str, mtime: float):
    from pycocotools.coco import COCO  # optional heavy import: only COCO masks need it

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return COCO(path)


def _coco_mask(rec: dict, size: tuple[int, int]) -> np.ndarray:
    coco = _coco(rec["coco"], Path(rec["coco"]).stat().st_mtime)
    order = {c: i + 1 for i, c in enumerate(sorted(coco.getCatIds()))}
    info = coco.imgs[rec["image_id"]]
    h, w = int(info.get("height") or size[1]), int(info.get("width") or size[0])
    out = np.zeros((h, w), np.uint8)
    anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[rec["image_id"]])), key=lambda a: -float(a.get("area", 0)))
    for ann in anns:  # large regions first, so smaller objects drawn later stay visible
        out[coco.annToMask({**ann, "image_id": rec["image_id"]}) > 0] = order[ann["category_id"]]
    return out


def raw_mask(rec: dict, colors: dict | None = None) -> np.ndarray:
    """The mask's stored values (H, W) as int64; colour masks mapped through ``colors`` (unknown colours: -1)."""
    if "coco" in rec:
        return _coco_mask(rec, (0, 0)).astype(np.int64)
    try:
        with open_image(rec["mask"]) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MaskError(f"mask cannot be read ({type(exc).__name__}: {exc})") from None
    if im.mode in ("P", "L", "1", "I;16", "I;16L", "I;16B", "I"):
        return np.asarray(im, dtype=np.int64)
    if im.mode not in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
        raise MaskError(f"mask mode {im.mode} holds no class indices")
    if im.mode == "LA":
        return np.asarray(im.getchannel(0), dtype=np.int64)
    rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    if colors:
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        uniq, inv = np.unique(code, return_inverse=True)
        table = {(r << 16) | (g << 8) | b: i for (r, g, b), i in colors.items()}
        return np.array([table.get(int(u), -1) for u in uniq], np.int64)[inv].reshape(code.shape)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]  # grey saved as RGB: the grey value is the index
    raise MaskError("an RGB colour mask and no colour table: the colours cannot be mapped to classes (add "
                    "'name r g b' lines to classes.txt, or a labelmap.txt)")


def load_mask(rec: dict, spec: dict) -> np.ndarray:
    """Class indices (H, W) uint8 with 255 = ignore, read as ``spec`` (from :func:`scan`) says."""
    a = raw_mask(rec, _colors(spec))
    if spec.get("binary"):
        a = np.where(a == 255, 1, a)
    if is_jpeg(rec):
        a = snap(a, spec)
    return np.where((a < 0) | (a >= spec["num_classes"]), IGNORE, a).astype(np.uint8)


def snap(a: np.ndarray, spec: dict) -> np.ndarray:
    """A JPEG mask's values moved to the nearest valid one (0/255 masks: thresholded at 128)."""
    if spec.get("binary"):
        return (a >= 128).astype(np.int64)
    valid = np.array(sorted(set(range(spec["num_classes"])) | {IGNORE}))
    return valid[np.abs(a[..., None] - valid).argmin(-1)]


def _colors(spec: dict) -> dict | None:
    return {tuple(c[:3]): c[3] for c in spec["colors"]} if spec.get("colors") else None



def _inspect(rec: dict, colors: dict | None):
    try:
        a = raw_mask(rec, colors)
        size = upright_size(rec["path"])
    except MaskError as exc:
        return rec, None, str(exc)
    except (OSError, ValueError) as exc:
        return rec, None, f"image cannot be read ({type(exc).__name__})"
    if (a.shape[1], a.shape[0]) != size:
        return rec, None, f"mask is {a.shape[1]}×{a.shape[0]} but its image is {size[0]}×{size[1]}"
    values, counts = np.unique(a, return_counts=True)
    return rec, dict(zip(values.tolist(), counts.tolist())), None


def scan(records: list[dict], names: list[str] | None, colors: dict | None,
         problems: list) -> tuple[list[dict], dict, dict[str, dict]]:
    """Read every mask once: the usable records, the spec every later read follows (``num_classes``,
    ``binary``, ``colors``) and each image's pixels per class value. Unusable masks are listed in ``problems``
    with the reason."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        seen = list(pool.map(lambda r: _inspect(r, colors), records))
    for rec, _, reason in seen:
        if reason:
            problems.append((rec.get("mask") or rec["path"], reason))
    seen = [(r, v) for r, v, reason in seen if reason is None]
    exact = set().union(*(v for r, v in seen if not is_jpeg(r))) if seen else set()
    lossy = [v for r, v in seen if is_jpeg(r)]
    smeared = set().union(*lossy) if lossy else set()
    if colors:
        binary = False
    elif exact:
        binary = exact <= {0, 255} and 255 in exact and (names is None or len(names) == 2)
    else:  # only JPEG masks: binary when nearly every pixel is near 0 or 255
        total = sum(sum(v.values()) for v in lossy) or 1
        near = sum(n for v in lossy for k, n in v.items() if k < 32 or k > 223)
        binary = bool(lossy) and near / total > 0.98 and (names is None or len(names) == 2) and len(smeared) > 2
    if names is not None:
        n = len(names)
    elif binary:
        n = 2
    else:
        found = [k for k in (exact or smeared) if k != IGNORE and k >= 0]
        n = max(found) + 1 if found else 0
    if binary:
        log.info("masks hold 0 and 255 only: read as background (0) and foreground (255 → 1)")
    spec = {"num_classes": n, "binary": bool(binary),
            "colors": [[*c, i] for c, i in colors.items()] if colors else None}
    good, pixels = [], {}
    for rec, values in seen:
        if binary:
            values = {(1 if k == 255 else k): c for k, c in values.items()}
        if not is_jpeg(rec):
            bad = sorted(k for k in values if k != IGNORE and not 0 <= k < n)
            if bad:
                what = "colours not in the colour table" if colors else \
                    f"value(s) {', '.join(map(str, bad[:6]))}{' …' if len(bad) > 6 else ''} outside the {n} classes"
                problems.append((rec["mask"], f"mask has {what}; 255 marks pixels to ignore"))
                continue
        if set(values) <= {IGNORE}:
            problems.append((rec.get("mask") or rec["path"], "every pixel is 255 (ignore): nothing to learn or score"))
            continue
        good.append(rec)
        pixels[rec["path"]] = values
    if lossy:
        log.warning("%d mask(s) are JPEG files: lossy compression smears class values at region edges; each pixel is "
                    "snapped to the nearest valid value (save masks as PNG to avoid this)", len(lossy))
    return good, spec, pixels
