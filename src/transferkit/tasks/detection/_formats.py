"""Box-labelled images in the usual layouts: Pascal VOC XML, COCO JSON, YOLO (data.yaml + labels/*.txt), a CSV
of boxes (one row per box, as most labelling tools export), and a root of train/ val/ test/ folders holding any
of them. Every layout becomes records ``{path, width, height, boxes (x1 y1 x2 y2, original pixels), labels,
ignore}``; what cannot be used is listed with its reason (``bad_files_``), never dropped silently."""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from PIL import Image

from ...data import IMAGE_EXTENSIONS, SPLIT_ALIASES, clean_split, read_rows
from ...errors import DataError

log = logging.getLogger("transferkit")
IMAGE_DIRS = ("JPEGImages", "images", "Images", "imgs")
XML_DIRS = ("Annotations", "annotations", "labels_xml")
CSV_BOX_COLUMNS = (("xmin", "ymin", "xmax", "ymax"), ("x1", "y1", "x2", "y2"), ("x_min", "y_min", "x_max", "y_max"))


def record(path: Path, size: tuple[int, int] | None) -> dict:
    width, height = size or image_size(path)
    return {"path": str(path), "width": int(width), "height": int(height), "boxes": [], "labels": [], "ignore": []}


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, as PIL reads it after EXIF rotation is ignored (what the decoder sees)."""
    with Image.open(path) as im:
        return im.size


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


def _image_index(dirs: list[Path]) -> dict[str, Path]:
    """The image files of ``dirs``, listed once, by file name and by stem (the first folder wins)."""
    index: dict[str, Path] = {}
    for d in dirs:
        for p in _image_files(d):
            index.setdefault(p.name, p)
            index.setdefault(p.stem, p)
    return index


def _image_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS) if d.is_dir() else []


# -- Pascal VOC ---------------------------------------------------------------------------------------------
def read_voc(root: Path, problems: list) -> tuple[dict[str, list[dict]] | None, list[dict]]:
    xml_dir = next((root / d for d in XML_DIRS if (root / d).is_dir() and any((root / d).glob("*.xml"))), root)
    image_dirs = [root / d for d in IMAGE_DIRS if (root / d).is_dir()] + [xml_dir, root]
    records, seen, index = {}, set(), _image_index(image_dirs)
    for xml in sorted(xml_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            problems.append((str(xml), f"XML does not parse ({exc})"))
            continue
        name = (tree.findtext("filename") or "").strip()
        img = index.get(xml.stem) or (index.get(name) or index.get(Path(name).stem) if name else None)
        if img is None:
            problems.append((str(xml), f"its image ({name or xml.stem}.*) is missing"))
            continue
        seen.add(img.resolve())
        size = tree.find("size")
        wh = None
        if size is not None and (size.findtext("width") or "").strip().isdigit():
            wh = (int(size.findtext("width")), int(size.findtext("height") or 0))
        try:
            real = image_size(img)
        except OSError:
            real = wh or (0, 0)  # the decode check lists it
        if wh and wh != real:
            log.warning("%s: <size> %s differs from the image's %s; the image's is used", xml, wh, real)
        rec = record(img, real)
        for i, obj in enumerate(tree.findall("object")):
            bb = obj.find("bndbox")
            label = (obj.findtext("name") or "").strip()
            where = f"{xml} object {i + 1}"
            if bb is None or not label:
                problems.append((where, "object without <name> or <bndbox>; dropped"))
                continue
            difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
            add_box(rec, [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")], label, difficult, problems, where)
        records[xml.stem] = rec
    for img in sorted(set(index.values())):
        if img.resolve() not in seen:
            problems.append((str(img), "image without an annotation file; left out"))
    sets = root / "ImageSets" / "Main"
    if sets.is_dir():
        split: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for name, target in (("trainval", "train"), ("train", "train"), ("val", "val"), ("test", "test")):
            f = sets / f"{name}.txt"
            if f.is_file() and not (name == "trainval" and (sets / "train.txt").is_file()):
                split[target] += [records[s] for s in f.read_text().split() if s in records]
        if split["train"]:
            return split, []
    return None, list(records.values())


# -- COCO ------------------------------------------------------------------------------------------------------
def find_coco_json(path: Path) -> Path:
    if path.is_file():
        return path
    found = [p for p in sorted(path.glob("*.json")) if _looks_coco(p)]
    if len(found) != 1:
        raise DataError(f"{path} holds {len(found)} COCO annotation files", "exactly one JSON with 'images' and "
                        "'annotations'", "Pass the file itself: --annotations path/to/instances.json")
    return found[0]


def _looks_coco(p: Path) -> bool:
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
    cats = {c["id"]: str(c["name"]) for c in doc.get("categories", []) if isinstance(c, dict) and "id" in c}
    dirs = [d for d in (images, path.parent, path.parent / "images", path.parent / "JPEGImages") if d is not None]
    by_id = {}
    for im in doc["images"]:
        name = str(im.get("file_name", ""))
        p = next((d / name for d in dirs if (d / name).is_file()), None)
        if p is None:
            problems.append((name or f"image id {im.get('id')}", f"image file not found (looked in {', '.join(map(str, dirs))})"))
            continue
        try:
            size = image_size(p)
        except OSError:
            size = (int(im.get("width") or 0), int(im.get("height") or 0))
        by_id[im.get("id")] = record(p, size)
    for i, ann in enumerate(doc["annotations"]):
        rec = by_id.get(ann.get("image_id"))
        where = f"{path} annotation {ann.get('id', i)}"
        if rec is None:
            continue  # its image was listed above (or is not in 'images')
        if ann.get("category_id") not in cats:
            problems.append((where, f"category_id {ann.get('category_id')!r} is not in 'categories'; dropped"))
            continue
        bb = ann.get("bbox")
        box = [bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3]] if isinstance(bb, list) and len(bb) == 4 \
            and all(isinstance(v, (int, float)) for v in bb) else bb
        add_box(rec, box, cats[ann["category_id"]], bool(ann.get("iscrowd", 0)), problems, where)
    return list(by_id.values())


# -- YOLO -------------------------------------------------------------------------------------------------------
def read_yolo(yaml_path: Path, problems: list) -> dict[str, list[dict]]:
    try:
        doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{yaml_path} does not parse as YAML ({exc})", "a YOLO data.yaml", "Fix the file") from None
    names = doc.get("names")
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else names
    if not isinstance(names, list) or not names:
        raise DataError(f"{yaml_path} has no 'names' list", "names: [class0, class1, …]", "Add the class names")
    base = Path(doc.get("path") or yaml_path.parent)
    base = base if base.is_absolute() else yaml_path.parent / base
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for key, entry in doc.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None or not entry:
            continue
        for e in entry if isinstance(entry, list) else [entry]:
            src = base / str(e)
            files = ([Path(line.strip()) if Path(line.strip()).is_absolute() else base / line.strip()
                      for line in src.read_text().splitlines() if line.strip()] if src.is_file()
                     else sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS))
            out[split] += [_yolo_record(f, names, problems) for f in files if f.is_file()]
    if not out["train"]:
        raise DataError(f"{yaml_path} lists no training images", "train: images/train (a folder or a .txt of paths)",
                        "Check the 'path' and 'train' entries")
    return out


def _yolo_record(img: Path, names: list[str], problems: list) -> dict:
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
        if not 0 <= c < len(names):
            problems.append((where, f"class {c} is not in data.yaml's {len(names)} names; dropped"))
            continue
        W, H = rec["width"], rec["height"]
        add_box(rec, [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H], str(names[c]),
                False, problems, where)
    return rec


# -- a CSV of boxes ---------------------------------------------------------------------------------------------
def read_box_csv(path: Path, quoting: str, problems: list) -> tuple[dict[str, list[dict]] | None, list[dict]]:
    table = read_rows(path, quoting)
    header = [h.lower() for h in table.header]
    file_col = next((c for c in ("filename", "file", "path", "image", "image_path") if c in header), None)
    label_col = next((c for c in ("class", "label", "category", "name") if c in header), None)
    box_cols = next((cols for cols in CSV_BOX_COLUMNS if all(c in header for c in cols)), None)
    if not (file_col and label_col and box_cols):
        raise DataError(f"{path} is not a table of boxes (columns: {', '.join(table.header)})",
                        "columns filename (or path), class (or label) and xmin, ymin, xmax, ymax (or x1, y1, x2, y2)",
                        "Rename the columns; one row per box, an empty class for an image without objects")
    orig = {h.lower(): h for h in table.header}
    problems += table.problems
    records: dict[str, dict] = {}
    splits: dict[str, str | None] = {}
    dirs = [path.parent, path.parent / "images", path.parent.parent / "images", path.parent / "JPEGImages"]
    for line, row in zip(table.lines, table.rows):
        where = f"{path}:{line}"
        name = (row.get(orig[file_col]) or "").strip()
        p = Path(name) if Path(name).is_absolute() else next((d / name for d in dirs if (d / name).is_file()), None)
        if not name or p is None or not p.is_file():
            problems.append((where, f"image {name!r} not found (looked beside the CSV and in its images/ folders)"))
            continue
        key = str(p)
        if key not in records:
            try:
                records[key] = record(p, None)
            except OSError:
                records[key] = {"path": key, "width": 0, "height": 0, "boxes": [], "labels": [], "ignore": []}
            splits[key] = clean_split(row.get(orig["split"]) if "split" in orig else None, where)
        label = (row.get(orig[label_col]) or "").strip()
        if label:
            add_box(records[key], [row.get(orig[c]) for c in box_cols], label, False, problems, where)
    if any(v is not None for v in splits.values()):
        out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for k, rec in records.items():
            out[splits[k] or "train"].append(rec)
        return out, []
    return None, list(records.values())


def read_any(path: Path, annotations: Path | None, images: Path | None, quoting: str,
             problems: list) -> tuple[dict[str, list[dict]] | None, list[dict]]:
    """Records of any supported layout at ``path`` (a file or a folder), presplit or not."""
    if annotations is not None:
        return None, read_coco(annotations, images or (path if path.is_dir() else None), problems)
    if not path.exists():
        raise DataError(f"{path} does not exist", "a folder or annotation file of box-labelled images", "Check the path")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return None, read_coco(path, images, problems)
        if suffix in (".yaml", ".yml"):
            return read_yolo(path, problems), []
        if suffix in (".csv", ".tsv", ".txt"):
            return read_box_csv(path, quoting, problems)
        raise DataError(f"{path} is not an annotation file this reads", "a COCO .json, a YOLO data.yaml, a CSV of "
                        "boxes, or a folder (VOC XML beside or under Annotations/)", "Pass one of those")
    subs = {SPLIT_ALIASES.get(d.name.lower()): d for d in path.iterdir() if d.is_dir()}
    if "train" in subs and not any(d.name in IMAGE_DIRS + XML_DIRS for d in path.iterdir()):
        out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for split, d in subs.items():
            if split is not None:
                pre, flat = read_any(d, None, None, quoting, problems)
                out[split] += flat + [r for part in (pre or {}).values() for r in part]
        return out, []
    yaml_files = [p for p in (path / "data.yaml", path / "dataset.yaml") if p.is_file()]
    if yaml_files:
        return read_yolo(yaml_files[0], problems), []
    if any(path.glob("*.xml")) or any((path / d).is_dir() for d in XML_DIRS):
        return read_voc(path, problems)
    jsons = [p for p in sorted(path.glob("*.json")) if _looks_coco(p)]
    if len(jsons) == 1:
        return None, read_coco(jsons[0], images, problems)
    raise DataError(f"No box annotations found in {path}", "Pascal VOC XML files (beside the images or in "
                    "Annotations/), one COCO JSON, a YOLO data.yaml, or train/ val/ test/ folders of those",
                    "Point at the annotations (--annotations file.json for COCO)")
