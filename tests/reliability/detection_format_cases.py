"""Box annotations that used to merge, drop or misread records without a word (COCO ids and string numbers, YOLO
name maps and lists, VOC stale file names and image sets, split folders, EXIF orientation), and annotation files
that used to end in a traceback: each now a listed skip, a warning, an accepted input or one clear error."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

from PIL import Image

from conftest import make_boxes
from reliability.detection_cases import DET, _coco, _voc


def _coco_change(change):
    return _coco(lambda doc, root: change(doc))


def _duplicate_id(doc: dict) -> None:
    doc["images"][1]["id"] = doc["images"][0]["id"]


def _orphan_annotation(doc: dict) -> None:
    doc["annotations"].append({**doc["annotations"][0], "id": 999, "image_id": 12345})


def _size_disagrees(doc: dict) -> None:
    doc["images"][0]["width"], doc["images"][0]["height"] = 160, 120


def _no_name(doc: dict) -> None:
    doc["categories"].append({"id": 7})


def _list_image_id(doc: dict) -> None:
    doc["annotations"][0]["image_id"] = [0]


def _strings(doc: dict) -> None:
    for a in doc["annotations"]:
        a["iscrowd"], a["bbox"] = "0", [str(v) for v in a["bbox"]]


def _yolo(change):
    def build(tmp: Path, run: Path) -> list[str]:
        path = make_boxes(tmp / "yolo", "yolo", n=12)
        change(path)
        return ["train", str(path), *DET, "--output", str(tmp / "runs")]
    return build


def _names_dict_with_gap(path: Path) -> None:
    path.write_text("path: .\ntrain: images\nnames: {'0': square, '3': disc}\n")
    for f in (path.parent / "labels").iterdir():
        f.write_text("".join(("3" + ln[1:] if ln.startswith("1 ") else ln) + "\n" for ln in f.read_text().splitlines()))


def _list_with_missing(path: Path) -> None:
    (path.parent / "train.txt").write_text("images/scene0.png\nimages/gone.png\n" +
                                           "".join(f"images/scene{i}.png\n" for i in range(1, 12)))
    path.write_text("path: .\ntrain: train.txt\nval: images_val\nnames: [square, disc]\n")


def _stale_filename(root: Path) -> None:
    """scene3_copy.xml: no image of its own name; its <filename> names scene3.png, which scene3.xml annotates."""
    shutil.copy(root / "Annotations" / "scene3.xml", root / "Annotations" / "scene3_copy.xml")


def _not_in_sets(root: Path) -> None:
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "trainval.txt").write_text("".join(f"scene{i}\n" for i in range(10)) + "ghost\n")
    (sets / "val.txt").write_text("scene8\nscene9\n")


def _float_size(root: Path) -> None:
    p = root / "Annotations" / "scene2.xml"
    p.write_text(p.read_text().replace("<height>60</height>", "<height>60.0</height>"))


def _val_and_valid(tmp: Path, run: Path) -> list[str]:
    for split, seed in (("train", 0), ("val", 1), ("valid", 2)):
        make_boxes(tmp / "d" / split, "voc", n=6 if split != "train" else 10, seed=seed)
    return ["train", str(tmp / "d"), *DET, "--output", str(tmp / "runs")]


def _partial_split(tmp: Path, run: Path) -> list[str]:
    path = make_boxes(tmp / "csv", "csv", n=8)
    lines = path.read_text().splitlines()
    lines[0] += ",split"
    lines = [lines[0]] + [ln + (",train" if i % 2 else ",") for i, ln in enumerate(lines[1:])]
    path.write_text("\n".join(lines) + "\n")
    return ["train", str(path), *DET, "--output", str(tmp / "runs")]


def _roboflow(tmp: Path, run: Path) -> list[str]:
    root = tmp / "rf"
    for split, n, seed in (("train", 10, 0), ("valid", 4, 1)):
        src = make_boxes(tmp / f"src_{split}", "yolo", n=n, seed=seed).parent
        (root / split).mkdir(parents=True)
        shutil.copytree(src / "images", root / split / "images")
        shutil.copytree(src / "labels", root / split / "labels")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['square', 'disc']\n")
    return ["train", str(root), *DET, "--output", str(tmp / "runs")]


def _exif_rotated(root: Path) -> None:
    """scene0 stored rotated a quarter turn with EXIF orientation 6 (shown upright); its boxes are in the upright
    frame, as labelling tools that apply EXIF draw them."""
    p = root / "JPEGImages" / "scene0.png"
    img = Image.open(p)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(p.with_suffix(".jpg"), exif=exif, quality=95)
    p.unlink()


def _header_bomb(root: Path) -> None:
    """A PNG whose header says 40000 × 40000 pixels (over Pillow's limit) with no image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    (root / "JPEGImages" / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    shutil.copy(root / "Annotations" / "scene0.xml", root / "Annotations" / "huge.xml")
    p = root / "Annotations" / "huge.xml"
    p.write_text(p.read_text().replace("scene0.png", "huge.png"))


def cases(Case) -> list:
    return [
        Case("det_coco_duplicate_image_id", "two COCO images with one id", "skip", "is used by 2 images",
             _coco_change(_duplicate_id)),
        Case("det_coco_orphan_annotation", "a COCO annotation whose image_id names no image", "skip",
             "is not an image of 'images'", _coco_change(_orphan_annotation)),
        Case("det_coco_size_disagrees", "COCO width/height that disagree with the file", "warn", "differ in size",
             _coco_change(_size_disagrees)),
        Case("det_coco_category_without_name", "a COCO category without a name", "skip", "has no id or no name",
             _coco_change(_no_name)),
        Case("det_coco_list_image_id", "a COCO annotation whose image_id is a list", "skip", "is not an image of",
             _coco_change(_list_image_id)),
        Case("det_coco_string_numbers", "COCO iscrowd \"0\" and bbox values as strings (read as numbers)", "ok",
             "iscrowd", _coco_change(_strings)),
        Case("det_yolo_names_dict_with_gap", "YOLO names as a dict with string keys and a gap in the ids", "ok",
             "not in data.yaml", _yolo(_names_dict_with_gap)),
        Case("det_yolo_list_with_missing_file", "a YOLO train list naming a missing image, a val path that does "
             "not exist", "skip", "but missing", _yolo(_list_with_missing)),
        Case("det_yaml_not_a_mapping", "a data.yaml that is a list", "error", "not a mapping",
             _yolo(lambda p: p.write_text("- images\n- labels\n"))),
        Case("det_voc_second_annotation", "two VOC annotation files for one image (a stale <filename>)", "skip",
             "a second annotation file", _voc(_stale_filename)),
        Case("det_voc_not_in_image_sets", "VOC images named in no ImageSets list, an id without annotation",
             "skip", "not named in any list", _voc(_not_in_sets)),
        Case("det_voc_float_size", "a VOC <height>60.0</height>", "ok", "scene2", _voc(_float_size)),
        Case("det_val_and_valid", "a root holding both val/ and valid/ (both read as val)", "ok", "valid", _val_and_valid),
        Case("det_csv_partial_split", "a box CSV whose split column is partly empty", "error", "have no split",
             _partial_split),
        Case("det_roboflow_export", "a Roboflow export (data.yaml with ../train/images, train/ valid/)", "ok",
             "No box annotations", _roboflow),
        Case("det_exif_rotated", "a photo stored rotated with EXIF orientation (boxes in the upright frame)", "ok",
             "lies outside", _voc(_exif_rotated)),
        Case("det_header_over_pixel_limit", "an image whose header is over Pillow's pixel limit", "skip",
             "huge.png", _voc(_header_bomb)),
    ]

