"""Box-labelled images in the usual layouts: Pascal VOC XML, COCO JSON, YOLO (data.yaml + labels/*.txt), a CSV
of boxes (one row per box, as most labelling tools export), and a root of train/ val/ test/ folders holding any
of them. Every layout becomes records ``{path, width, height, boxes (x1 y1 x2 y2, original pixels), labels,
ignore}``; what cannot be used is listed with its reason (``bad_files_``), never dropped silently."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

from ...data import IMAGE_EXTENSIONS, SPLIT_ALIASES, clean_split, read_rows
from ...errors import DataError
from ._boxes import add_box, image_size, record
from ._coco import looks_coco, read_coco
from ._yolo import read_yolo

log = logging.getLogger("transferkit")
IMAGE_DIRS = ("JPEGImages", "images", "Images", "imgs")
XML_DIRS = ("Annotations", "annotations", "labels_xml")
CSV_BOX_COLUMNS = (("xmin", "ymin", "xmax", "ymax"), ("x1", "y1", "x2", "y2"), ("x_min", "y_min", "x_max", "y_max"))


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
        if img.resolve() in seen:
            problems.append((str(xml), f"a second annotation file for {img.name} (its <filename> or name matches one "
                             "read already); left out"))
            continue
        seen.add(img.resolve())
        size = tree.find("size")
        wh = None
        try:
            wh = (round(float(size.findtext("width"))), round(float(size.findtext("height")))) if size is not None else None
        except (TypeError, ValueError):
            wh = None  # no usable <size>: the image's own is used
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
    lists = {n: (sets / f"{n}.txt").read_text().split() for n in ("train", "trainval", "val", "test")
             if (sets / f"{n}.txt").is_file()} if sets.is_dir() else {}
    if not lists:
        return None, list(records.values())
    return _voc_sets(sets, lists, records, problems), []


def _voc_sets(sets: Path, lists: dict[str, list[str]], records: dict[str, dict], problems: list) -> dict:
    """The split of ``ImageSets/Main``: train.txt, else trainval.txt less val.txt; ids without an annotation and
    annotated images named in no list are listed, never dropped silently."""
    held = set(lists.get("val", [])) | set(lists.get("test", []))
    train = lists["train"] if "train" in lists else [i for i in lists.get("trainval", []) if i not in held]
    if "train" not in lists and "trainval" in lists:
        log.info("%s: no train.txt; train is trainval.txt less val.txt and test.txt", sets)
    split: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    placed: set[str] = set()
    for k, ids in (("train", train), ("val", lists.get("val", [])), ("test", lists.get("test", []))):
        for i in ids:
            if i not in records:
                problems.append((f"{sets} {k}: {i}", "id listed but it has no annotation file (or image); left out"))
            elif i in placed:
                problems.append((f"{sets} {k}: {i}", "listed in two splits; kept in the first"))
            else:
                placed.add(i)
                split[k].append(records[i])
    for i, rec in records.items():
        if i not in placed:
            problems.append((rec["path"], f"not named in any list of {sets}; left out"))
    if not split["train"]:
        raise DataError(f"{sets} names no training image with an annotation", "train.txt (or trainval.txt) listing "
                        "annotated image ids", "Fix the lists, or remove ImageSets/Main for a seeded split")
    return split


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
    given = [k for k, v in splits.items() if v is not None]
    if given and len(given) < len(splits):
        raise DataError(f"{path}: {len(splits) - len(given)} of {len(splits)} images have no split (an empty split "
                        "cell on their first row)", "a split (train, val or test) for every image, or no split column",
                        "Fill the split column, or drop it for a seeded split")
    if given:
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
    yaml_files = [p for p in (path / "data.yaml", path / "dataset.yaml") if p.is_file()]
    if yaml_files:  # before split folders: a Roboflow export is data.yaml beside train/ valid/ test/
        return read_yolo(yaml_files[0], problems), []
    subs: dict[str, list[Path]] = {}
    for d in sorted(p for p in path.iterdir() if p.is_dir()):
        if SPLIT_ALIASES.get(d.name.lower()):
            subs.setdefault(SPLIT_ALIASES[d.name.lower()], []).append(d)
    if "train" in subs and not any(d.name in IMAGE_DIRS + XML_DIRS for d in path.iterdir()):
        out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for split, dirs in subs.items():
            if len(dirs) > 1:
                log.info("%s: %s are all read as %s", path, " and ".join(d.name + "/" for d in dirs), split)
            for d in dirs:
                pre, flat = read_any(d, None, None, quoting, problems)
                out[split] += flat + [r for part in (pre or {}).values() for r in part]
        return out, []
    if any(path.glob("*.xml")) or any((path / d).is_dir() for d in XML_DIRS):
        return read_voc(path, problems)
    jsons = [p for p in sorted(path.glob("*.json")) if looks_coco(p)]
    if len(jsons) == 1:
        return None, read_coco(jsons[0], images, problems)
    raise DataError(f"No box annotations found in {path}", "Pascal VOC XML files (beside the images or in "
                    "Annotations/), one COCO JSON, a YOLO data.yaml, or train/ val/ test/ folders of those",
                    "Point at the annotations (--annotations file.json for COCO)")
