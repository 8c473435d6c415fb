"""Reading masks as class indices: index PNGs (8 or 16 bit), palette PNGs (the palette index is the class), 0/255
masks (background / foreground, anti-aliased edges thresholded), RGB colour masks with a colour table, COCO polygons or
RLE; 255 = ignore. What the masks are is decided once from the whole set (:func:`scan`: the histogram of values over
every file), and every later read follows that decision (the ``spec``). JPEG masks are lossy — class values smear at
region edges — so their pixels are snapped to the nearest valid value. Headers are checked before any decode."""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ...data import open_image, upright_size
from ...errors import DataError
from ._coco import coco_mask

log = logging.getLogger("transferkit")
IGNORE = 255
JPEG = (".jpg", ".jpeg", ".jfif")
MAX_CLASSES = 255  # indices 0–254; 255 marks ignore
STRAY_SHARE = 1e-4  # a value on fewer pixels than this share of the whole set is a stray, not a class
STRAY_PER_FILE = 0.01  # a mask whose out-of-range pixels are more than this share is listed, not mended
LOSSY_CLASS_SHARE = 0.005  # in JPEG masks, a value is a class only on at least this share of the pixels
#: EXIF orientation → the transpose that makes a stored-frame picture upright (as ``ImageOps.exif_transpose``)
ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}


class MaskError(ValueError):
    """A mask that cannot be used, with the reason."""


def is_jpeg(rec: dict) -> bool:
    return Path(rec.get("mask", "")).suffix.lower() in JPEG


def _header(path) -> tuple[tuple[int, int], tuple[int, int], int]:
    """(upright size, stored size, EXIF orientation) from the header alone; over Pillow's pixel limit is refused."""
    try:
        with open_image(path) as im:
            w, h = im.size
            orient = int(im.getexif().get(0x0112, 1) or 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning: where a filter
        raise OSError(f"over the decompression-bomb pixel limit ({exc})") from None  # elsewhere made it an error
    if w * h > (Image.MAX_IMAGE_PIXELS or float("inf")):
        raise OSError(f"over the decompression-bomb pixel limit ({w}×{h} = {w * h / 1e6:.0f} Mpx > "
                      f"{Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx)")
    return ((h, w) if orient in (5, 6, 7, 8) else (w, h)), (w, h), orient


def raw_mask(rec: dict, colors: dict | None = None) -> np.ndarray:
    """The mask's stored values (H, W) as int64; colour masks mapped through ``colors`` (unknown colours: -1)."""
    if "coco" in rec:
        return coco_mask(rec["coco"], rec["image_id"], upright_size(rec["path"])).astype(np.int64)
    try:
        _header(rec["mask"])  # the pixel limit, before any decode
        with open_image(rec["mask"]) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if rec.get("orient") in ORIENT:  # a mask drawn on the stored frame of an EXIF-rotated photo
                im = im.transpose(ORIENT[rec["orient"]])
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
        if is_jpeg(rec):  # lossy: each colour goes to the nearest table colour, if it is near one
            table = np.array(list(colors), np.int64)
            cols = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1)
            dist = ((cols[:, None, :] - table[None]) ** 2).sum(-1)
            near = dist.argmin(1)
            ids = np.array([colors[tuple(table[k])] for k in near], np.int64)
            return np.where(dist.min(1) <= 48 ** 2, ids, -1)[inv].reshape(code.shape)
        table = {(r << 16) | (g << 8) | b: i for (r, g, b), i in colors.items()}
        return np.array([table.get(int(u), -1) for u in uniq], np.int64)[inv].reshape(code.shape)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]  # grey saved as RGB: the grey value is the index
    raise MaskError("an RGB colour mask and no colour table: the colours cannot be mapped to classes (add "
                    "'name r g b' lines to classes.txt, or a labelmap.txt)")


def load_mask(rec: dict, spec: dict) -> np.ndarray:
    """Class indices (H, W) uint8 with 255 = ignore, read as ``spec`` (from :func:`scan`) says."""
    return to_classes(raw_mask(rec, _colors(spec)), spec, is_jpeg(rec)).astype(np.uint8)


def to_classes(a: np.ndarray, spec: dict, lossy: bool) -> np.ndarray:
    """Stored values → class indices under the set's one policy: 0/255 masks thresholded at 128 (anti-aliased edges,
    JPEG); sparse values (16-bit ids) mapped through ``values``; JPEG values snapped to the nearest valid one; anything
    else outside the classes → 255 (ignore)."""
    n = spec["num_classes"]
    if spec.get("binary"):
        return (a >= 128).astype(np.int64)
    if spec.get("values"):
        values = np.asarray(spec["values"], np.int64)
        if lossy:
            a = values[np.abs(a[..., None] - values).argmin(-1)]
        pos = np.clip(np.searchsorted(values, a), 0, len(values) - 1)
        return np.where(values[pos] == a, pos, IGNORE)
    if lossy and not spec.get("colors"):  # colour masks were matched to the nearest table colour already
        valid = np.array(sorted(set(range(n)) | {IGNORE}))
        a = valid[np.abs(a[..., None] - valid).argmin(-1)]
    return np.where((a < 0) | (a >= n), IGNORE, a)


def _colors(spec: dict) -> dict | None:
    return {tuple(c[:3]): c[3] for c in spec["colors"]} if spec.get("colors") else None


def _inspect(rec: dict, colors: dict | None):
    """(record — with ``orient`` where the mask is in the image's stored frame —, value counts, reason or None)."""
    try:
        size, stored, orient = _header(rec["path"])
    except (OSError, ValueError) as exc:
        return rec, None, f"image cannot be read ({type(exc).__name__}: {exc})"
    if "mask" in rec:
        try:
            msize = _header(rec["mask"])[0]
        except (OSError, ValueError) as exc:
            return rec, None, f"mask cannot be read ({type(exc).__name__}: {exc})"
        if msize != size:
            if msize == stored and orient in ORIENT:
                rec = {**rec, "orient": orient}
            else:
                return rec, None, f"mask is {msize[0]}×{msize[1]} but its image is {size[0]}×{size[1]}"
    try:
        a = raw_mask(rec, colors)
    except MaskError as exc:
        return rec, None, str(exc)
    except (OSError, ValueError) as exc:
        return rec, None, f"mask cannot be read ({type(exc).__name__}: {exc})"
    values, counts = np.unique(a, return_counts=True)
    return rec, dict(zip(values.tolist(), counts.tolist())), None


def _where(rec: dict) -> str:
    return rec.get("mask") or rec["path"]


def _decide(exact: Counter, lossy: Counter, names, colors) -> dict:
    """What the masks are, from the value histogram of every file (exact: PNG …, lossy: JPEG)."""
    if colors:
        return {"num_classes": len(names) if names else max(colors.values()) + 1, "binary": False}
    e_total, l_total = sum(exact.values()) or 1, sum(lossy.values()) or 1
    main = {v for v, c in exact.items() if c / e_total >= STRAY_SHARE}
    main |= {v for v, c in lossy.items() if c / l_total >= LOSSY_CLASS_SHARE}
    two = names is None or len(names) == 2
    if two and exact:
        middle = {v: c for v, c in exact.items() if v not in (0, 255)}
        edge = sum(middle.values()) / e_total
        # anti-aliased edges: many values in between, low and high alike, on a minority of the pixels (an index
        # mask's classes are a few values, most of them low)
        smooth = len(middle) >= 16 and min(middle) < 64 and max(middle) > 192 and edge < 0.25
        if exact.get(255, 0) / e_total >= STRAY_SHARE and (not main - {0, 255} or smooth):
            return {"num_classes": 2, "binary": True}
    elif two and lossy:
        near0 = sum(c for v, c in lossy.items() if v < 32) / l_total
        near255 = sum(c for v, c in lossy.items() if v > 223) / l_total
        if near0 + near255 > 0.95 and near255 >= 0.001 and near0 >= 0.001:
            return {"num_classes": 2, "binary": True}
    classes = sorted(v for v in main if v != IGNORE and v >= 0)
    if names is not None:
        if len(names) > MAX_CLASSES:
            raise DataError(f"The class table names {len(names)} classes", f"at most {MAX_CLASSES} (indices 0–254; "
                            "255 marks pixels to ignore)", "Merge classes")
        return {"num_classes": len(names), "binary": False}
    if not classes:
        return {"num_classes": 0, "binary": False}
    if classes[-1] < MAX_CLASSES:
        return {"num_classes": classes[-1] + 1, "binary": False}
    if len(classes) > MAX_CLASSES:
        raise DataError(f"The masks hold {len(classes)} distinct class values (up to {classes[-1]})",
                        f"at most {MAX_CLASSES} classes (indices 0–254; 255 marks pixels to ignore)",
                        "Merge classes, or map the ids to fewer classes")
    log.info("mask values go up to %d: the %d values found are mapped to classes 0–%d in order (%s)", classes[-1],
             len(classes), len(classes) - 1, ", ".join(map(str, classes[:12])) + (" …" if len(classes) > 12 else ""))
    return {"num_classes": len(classes), "binary": False, "values": classes}


def scan(records: list[dict], names: list[str] | None, colors: dict | None,
         problems: list) -> tuple[list[dict], dict, dict[str, dict]]:
    """Read every mask once: the usable records, the spec every later read follows (``num_classes``, ``binary``,
    ``colors``, ``values``) and each image's pixels per class. What the masks are is decided from all of them
    together; a mask that cannot be read, or whose values mostly fall outside the classes, is listed in ``problems``
    with the reason; stray pixels (values on a few pixels of the set, outside the classes) are set to ignore and
    listed in one warning naming the files and values."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        seen = list(pool.map(lambda r: _inspect(r, colors), records))
    for rec, _, reason in seen:
        if reason:
            problems.append((_where(rec), reason))
    seen = [(r, v) for r, v, reason in seen if reason is None]
    exact, lossy = Counter(), Counter()
    for r, v in seen:
        (lossy if is_jpeg(r) else exact).update(v)
    spec = {**_decide(exact, lossy, names, colors),
            "colors": [[*c, i] for c, i in colors.items()] if colors else None}
    if spec["binary"]:
        between = sum(c for v, c in exact.items() if v not in (0, 255))
        if between:
            log.info("masks hold 0 and 255 with anti-aliased edges (%d pixel(s) in between): read as background (0) "
                     "and foreground (1), thresholded at 128", between)
        else:
            log.info("masks hold 0 and 255 only: read as background (0) and foreground (255 → 1)")
    good, pixels, strays = [], {}, []
    n = spec["num_classes"]
    for rec, values in seen:
        read_as = dict(zip(values, to_classes(np.array(list(values)), spec, is_jpeg(rec)).tolist()))
        classes: Counter = Counter()
        for v, c in values.items():
            classes[read_as[v]] += c
        total = sum(values.values())
        outside = sorted(v for v in values if v != IGNORE and read_as[v] == IGNORE)
        bad = sum(values[v] for v in outside)
        if outside and not is_jpeg(rec):
            if bad / total > STRAY_PER_FILE:
                what = "colours not in the colour table" if colors else \
                    f"value(s) {', '.join(map(str, outside[:6]))}{' …' if len(outside) > 6 else ''} outside the {n} classes"
                problems.append((_where(rec), f"mask has {what} on {bad / total:.0%} of its pixels; 255 marks pixels "
                                 "to ignore"))
                continue
            strays.append(f"{Path(_where(rec)).name} ({', '.join(map(str, outside[:4]))}: {bad} px)")
        if set(k for k, c in classes.items() if c) <= {IGNORE}:
            problems.append((_where(rec), "every pixel is 255 (ignore): nothing to learn or score"))
            continue
        good.append(rec)
        pixels[rec["path"]] = dict(classes)
    if strays:
        log.warning("%d mask(s) hold stray values outside the %d classes on a few pixels, read as ignore (255): %s",
                    len(strays), n, "; ".join(strays[:8]) + (" …" if len(strays) > 8 else ""))
    lossy_n = sum(is_jpeg(r) for r, _ in seen)
    if lossy_n:
        log.warning("%d mask(s) are JPEG files: lossy compression smears class values at region edges; each pixel is "
                    "snapped to the nearest valid value (save masks as PNG to avoid this)", lossy_n)
    return good, spec, pixels
