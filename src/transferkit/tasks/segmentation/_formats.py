"""Mask-labelled images in the usual layouts: ``images/`` + ``masks/`` with the same stems, a root of ``train/ val/
test/`` folders holding that pair, Pascal VOC (``JPEGImages/`` + ``SegmentationClass/`` + ``ImageSets/Segmentation``),
a CSV of ``image,mask[,split]``, and COCO polygons or RLE (turned into class masks with pycocotools). The class table
comes from ``classes.txt`` (index order; ``name r g b`` or ``name #rrggbb`` lines give the colours of RGB masks), a
CVAT/VOC ``labelmap.txt``, the format itself, or the indices found. Every pair becomes a record ``{path, mask}``; what
cannot be used is listed with its reason, never dropped silently."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ...data import IMAGE_EXTENSIONS, SPLIT_ALIASES, clean_split, read_rows
from ...errors import DataError
from ._coco import coco_index

log = logging.getLogger("transferkit")
IMAGE_DIRS = ("images", "imgs", "img", "image", "JPEGImages", "rgb", "inputs")
MASK_DIRS = ("masks", "mask", "SegmentationClass", "labels", "label", "annotations", "gt", "ground_truth",
             "groundtruth", "targets")
MASK_SUFFIXES = ("_mask", "-mask", "_masks", "_label", "-label", "_labels", "_gt", "_seg", "_segmentation", "_m")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")
IMAGE_COLUMNS = ("image", "img", "image_path", "path", "input", "file")
MASK_COLUMNS = ("mask", "mask_path", "masks", "segmentation", "annotation", "gt", "target", "seg")
#: Pascal VOC's 21 classes in index order (its masks are palette PNGs; 255 marks the void border)
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def _files(d: Path, suffixes=IMAGE_EXTENSIONS) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in suffixes) if d.is_dir() else []


def _sub(root: Path, names) -> Path | None:
    """The first of ``names`` that is a folder of ``root`` (any case)."""
    by_lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    return next((by_lower[n.lower()] for n in names if n.lower() in by_lower), None)


def mask_stem(path: Path) -> str:
    stem = path.stem
    for s in MASK_SUFFIXES:
        if stem.lower().endswith(s) and len(stem) > len(s):
            return stem[: -len(s)]
    return stem


def pair_folder(images: Path, masks: Path, problems: list) -> list[dict]:
    """Images and masks matched by stem (a mask may add ``_mask``, ``_label`` …); the unmatched are listed."""
    by_stem: dict[str, Path] = {}
    for m in _files(masks):
        for key in dict.fromkeys((m.stem, mask_stem(m))):
            if key in by_stem and by_stem[key].suffix.lower() != m.suffix.lower():
                problems.append((str(m), f"a second mask for {key} ({by_stem[key].name}); the first is used"))
            by_stem.setdefault(key, m)
    records, used, stems = [], set(), {}
    for img in _files(images):
        mask = by_stem.get(img.stem)
        if mask is None:
            problems.append((str(img), f"no mask named {img.stem}.* in {masks}"))
            continue
        if img.stem in stems:
            problems.append((str(img), f"a second image for the mask {mask.name} ({stems[img.stem]} has it); the "
                             "first is used"))
            continue
        stems[img.stem] = img.name
        used.add(mask)
        records.append({"path": str(img), "mask": str(mask)})
    for m in sorted(set(by_stem.values()) - used):
        problems.append((str(m), f"a mask without an image named {mask_stem(m)}.* in {images}"))
    return records


def _split_lists(root: Path) -> dict[str, set[str]] | None:
    """``splits/{train,val,test}.txt`` or VOC's ``ImageSets/Segmentation/*.txt``: stems listed per split."""
    for d in (root / "splits", root / "ImageSets" / "Segmentation", root / "ImageSets"):
        files = {SPLIT_ALIASES.get(p.stem.lower()): p for p in _files(d, (".txt",))}
        files.pop(None, None)
        if files:
            return {k: {list_stem(ln) for ln in p.read_text(encoding="utf-8-sig").splitlines()
                        if ln.strip() and not ln.lstrip().startswith("#")} for k, p in files.items()}
    return None


def list_stem(line: str) -> str:
    """The image a split-list line names: its first field, less a file suffix where it has one (``scan.01`` stays
    ``scan.01``; ``images/scan.01.png`` is ``scan.01``)."""
    name = Path(line.split()[0].replace("\\", "/")).name
    suffix = Path(name).suffix.lower()
    return name[: -len(suffix)] if suffix in IMAGE_EXTENSIONS or suffix in (".txt", ".xml", ".json") else name


def _apply_lists(records: list[dict], lists: dict[str, set[str]], problems: list) -> dict[str, list[dict]]:
    parts: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for r in records:
        stem = Path(r["path"]).stem
        where = [k for k in ("test", "val", "train") if stem in lists.get(k, ())]
        if not where:
            problems.append((r["path"], f"not listed in any of the split files ({', '.join(sorted(lists))})"))
            continue
        if len(where) > 1:
            problems.append((r["path"], f"listed in {' and '.join(where)}; used in {where[0]} only"))
        parts[where[0]].append(r)
    known = {Path(r["path"]).stem for r in records}
    for k, stems in lists.items():
        for s in sorted(stems - known)[:20]:
            problems.append((f"{k} list: {s}", "listed but has no image with its mask"))
    if "train" not in lists and "val" in lists and not parts["train"]:
        raise DataError("The split files list val (or test) but no train", "splits/train.txt (or trainval.txt)",
                        "Add a train list; the images not in val are not assumed to be training images")
    return parts


def _pairs_in(root: Path, problems: list) -> list[dict] | None:
    images, masks = _sub(root, IMAGE_DIRS), _sub(root, MASK_DIRS)
    if images is None or masks is None:
        return None
    return pair_folder(images, masks, problems)


def mask_layout(path: Path) -> str | None:
    """The mask layout a folder shows without a doubt (for a hint to other tasks): ``images/`` beside ``masks/`` (or
    VOC's ``JPEGImages/`` + ``SegmentationClass/``), at its root or in its split folders."""
    if not path.is_dir():
        return None
    roots = [path] + [d for d in path.iterdir() if d.is_dir() and SPLIT_ALIASES.get(d.name.lower())]
    for root in roots:
        images, masks = _sub(root, IMAGE_DIRS), _sub(root, MASK_DIRS)
        if images is not None and masks is not None and _files(images) and _files(masks):
            where = "" if root == path else f" in {root.name}/"
            return f"images with masks ({images.name}/ + {masks.name}/{where})"
    return None


def read_layout(path: Path, quoting: str, problems: list) -> tuple[dict[str, list[dict]] | None, list[dict], str]:
    """(records per given split or None, unsplit records, what was read)."""
    if path.is_file():
        if path.suffix.lower() == ".json":
            return None, read_coco(path, None, problems), f"COCO annotations {path}"
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"{path} is neither a folder nor a table of image,mask pairs",
                            "a folder with images/ and masks/, a VOC root, or a CSV/TSV/JSONL with image and mask columns",
                            "Pass the dataset's root folder")
        return _read_table(path, quoting, problems)
    if not path.is_dir():
        raise DataError(f"{path} does not exist", "a folder of images and masks, or a CSV of image,mask pairs")
    split_dirs = {}
    for d in sorted(p for p in path.iterdir() if p.is_dir()):
        split = SPLIT_ALIASES.get(d.name.lower())
        if split and (_sub(d, IMAGE_DIRS) and _sub(d, MASK_DIRS)):
            split_dirs.setdefault(split, []).append(d)
    if split_dirs:
        for split, dirs in split_dirs.items():
            if len(dirs) > 1:
                log.info("%s: %s all read as %s", path, " and ".join(d.name + "/" for d in dirs), split)
        return ({k: [r for d in split_dirs.get(k, []) for r in _pairs_in(d, problems)] for k in ("train", "val", "test")},
                [], f"split folders of images and masks in {path}")
    coco = next((p for p in (path / "annotations.json", path / "_annotations.coco.json") if p.is_file()), None)
    records = _pairs_in(path, problems)
    if records is None:
        if coco is not None:
            return None, read_coco(coco, path, problems), f"COCO annotations {coco}"
        raise DataError(f"{path} holds no images/ and masks/ folders", "images/ + masks/ with the same file stems "
                        "(or JPEGImages/ + SegmentationClass/, train/ val/ test/ folders of those, a CSV of image,mask "
                        "pairs, a COCO JSON)", "Arrange the data in one of these layouts")
    lists = _split_lists(path)
    if lists is not None:
        return _apply_lists(records, lists, problems), [], f"images and masks in {path} with its split lists"
    return None, records, f"images and masks in {path}"


def _read_table(path: Path, quoting: str, problems: list):
    table = read_rows(path, quoting)
    problems += table.problems
    cols = {c.strip().lower(): c for c in table.header}
    img_col = next((cols[c] for c in IMAGE_COLUMNS if c in cols), None)
    mask_col = next((cols[c] for c in MASK_COLUMNS if c in cols), None)
    if img_col is None or mask_col is None:
        raise DataError(f"{path} has no {'image' if img_col is None else 'mask'} column (columns: "
                        f"{', '.join(cols) or 'none'})", "columns image and mask (and optionally split)",
                        "Rename the columns, e.g. image,mask,split")
    split_col = cols.get("split")
    flat, pre, seen_split, listed = [], {"train": [], "val": [], "test": []}, [], {}
    for line, row in zip(table.lines, table.rows):
        where = f"{path}:{line}"
        img, mask = (row.get(img_col) or "").strip(), (row.get(mask_col) or "").strip()
        if not img or not mask:
            problems.append((where, f"empty {'image' if not img else 'mask'} cell"))
            continue
        rec = {"path": str((path.parent / img).resolve()), "mask": str((path.parent / mask).resolve())}
        if rec["path"] in listed:
            problems.append((where, f"image {img} is listed again (first on line {listed[rec['path']]}); the first "
                             "row is used"))
            continue
        listed[rec["path"]] = line
        for key in ("path", "mask"):
            if not Path(rec[key]).is_file():
                problems.append((where, f"{key if key == 'mask' else 'image'} file {rec[key]} does not exist"))
                break
        else:
            split = clean_split(row.get(split_col), where) if split_col else None
            seen_split.append(split)
            (pre[split] if split else flat).append(rec)
    given = [s for s in seen_split if s]
    if given and len(given) < len(seen_split):
        raise DataError(f"{path}: {len(seen_split) - len(given)} of {len(seen_split)} rows have an empty split cell",
                        "a split (train, val or test) on every row, or no split column",
                        "Fill the split column, or drop it for a seeded split")
    return (pre, [], f"table {path}") if given else (None, flat, f"table {path}")


def read_coco(path: Path, image_root: Path | None, problems: list) -> list[dict]:
    """COCO instance annotations (polygons or RLE), checked entry by entry (``_coco``): records carry ``coco`` (the
    file) and ``image_id`` instead of a mask path; broken entries are listed with their reason."""
    idx = coco_index(path)
    problems += idx.problems
    root = image_root or path.parent
    records = []
    for iid, im in idx.images.items():
        name = im["file_name"]
        p = next((q for q in (root / name, root / "images" / name) if name and q.is_file()), None)
        if p is None:
            problems.append((str(root / name), "image file named in the COCO file is missing"))
            continue
        records.append({"path": str(p), "coco": str(path), "image_id": iid})
    return records


def coco_classes(path: Path) -> list[str]:
    return ["background"] + [name for _, name in coco_index(path).categories]


_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def _rgb(values: list[str], where: str) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(v) for v in values)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise DataError(f"{where} has no r,g,b colour (three whole numbers 0–255)", "name:r,g,b:: per class "
                        "(labelmap.txt) or 'name r g b' (classes.txt)", "Fix that line")
    return rgb


def _checked_names(names: list[str], table: Path) -> list[str]:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise DataError(f"{table} names the class {n!r} twice (classes {seen[n]} and {i})", "one name per class",
                            "Rename or remove one of them")
        seen[n] = i
    return names


def read_class_table(root: Path) -> tuple[list[str] | None, dict[tuple[int, int, int], int] | None]:
    """Class names in index order and, where given, the RGB colour of each (for colour masks). Blank lines and
    ``#`` comments are skipped; a bad line is named; a name given twice is refused."""
    base = root if root.is_dir() else root.parent
    labelmap = base / "labelmap.txt"
    if labelmap.is_file():  # CVAT / VOC export: "name:r,g,b:parts:actions"
        names, colors = [], {}
        for no, ln in enumerate(labelmap.read_text(encoding="utf-8-sig").splitlines(), 1):
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            name, _, rest = ln.partition(":")
            colors[_rgb(rest.split(":")[0].split(","), f"{labelmap}: line {no} ({ln.strip()[:60]!r})")] = len(names)
            names.append(name.strip())
        return _checked_names(names, labelmap), colors
    table = base / "classes.txt"
    if not table.is_file():
        return None, None
    names, colors = [], {}
    for no, ln in enumerate(table.read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = ln.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        where = f"{table}: line {no} ({ln.strip()[:60]!r})"
        if len(parts) >= 4 and all(p.lstrip("-").isdigit() for p in parts[-3:]):
            colors[_rgb(parts[-3:], where)] = len(names)
            parts = parts[:-3]
        elif len(parts) >= 2 and _HEX.match(parts[-1]):
            h = _HEX.match(parts[-1]).group(1)
            colors[tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))] = len(names)
            parts = parts[:-1]
        names.append(" ".join(parts))
    return _checked_names(names, table), colors or None
