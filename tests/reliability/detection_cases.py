"""Bad box annotations for ``--task detect``: each a listed skip (the path and the reason) or one clear error."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY, make_boxes

DET = ["--task", "detect", "--backbone", TINY, "--image-size", "64", "--epochs", "1", "--batch-size", "4",
       "--workers", "0"]


def _voc(change):
    """A VOC folder of 12 scenes, with ``change(root)`` applied, trained on."""
    def build(tmp: Path, run: Path) -> list[str]:
        root = make_boxes(tmp / "voc", "voc", n=12)
        change(root)
        return ["train", str(root), *DET, "--output", str(tmp / "runs")]
    return build


def _coco(change):
    def build(tmp: Path, run: Path) -> list[str]:
        path = make_boxes(tmp / "coco", "coco", n=12)
        doc = json.loads(path.read_text())
        change(doc, path.parent)
        path.write_text(json.dumps(doc))
        return ["train", str(path), *DET, "--output", str(tmp / "runs")]
    return build


def _edit_xml(name: str, old: str, new: str):
    def change(root: Path) -> None:
        p = root / "Annotations" / name
        p.write_text(p.read_text().replace(old, new, 1))
    return change


def _box(xml_box: str):
    """scene1's first box replaced by ``xml_box`` (xmin, ymin, xmax, ymax elements)."""
    def change(root: Path) -> None:
        import re

        p = root / "Annotations" / "scene1.xml"
        p.write_text(re.sub(r"<bndbox>.*?</bndbox>", f"<bndbox>{xml_box}</bndbox>", p.read_text(), count=1))
    return change


def _unseen_class(tmp: Path, run: Path) -> list[str]:
    make_boxes(tmp / "data" / "train", "voc", n=10)
    test = make_boxes(tmp / "data" / "test", "voc", n=4, seed=1)
    p = test / "Annotations" / "scene0.xml"
    p.write_text(p.read_text().replace("<name>square</name>", "<name>triangle</name>").replace(
        "<name>disc</name>", "<name>triangle</name>"))
    return ["train", str(tmp / "data"), *DET, "--output", str(tmp / "runs")]


def _yolo_bad(tmp: Path, run: Path) -> list[str]:
    path = make_boxes(tmp / "yolo", "yolo", n=12)
    with open(path.parent / "labels" / "scene2.txt", "a") as fh:
        fh.write("7 0.5 0.5 0.2 0.2\nnot a box\n")
    return ["train", str(path), *DET, "--output", str(tmp / "runs")]


def _images_only(tmp: Path, run: Path) -> list[str]:
    root = make_boxes(tmp / "voc", "voc", n=4)
    for x in (root / "Annotations").iterdir():
        x.unlink()
    (root / "Annotations").rmdir()
    return ["train", str(root), *DET]


def _text_table(tmp: Path, run: Path) -> list[str]:
    (tmp / "t.csv").write_text("text,label\nhello,a\nbye,b\n")
    return ["train", str(tmp / "t.csv"), *DET]


def _drop_image(root: Path) -> None:
    (root / "JPEGImages" / "scene3.png").unlink()


def _stray_image(root: Path) -> None:
    (root / "Annotations" / "scene4.xml").unlink()


def _no_objects(root: Path) -> None:
    import re

    p = root / "Annotations" / "scene5.xml"
    p.write_text(re.sub(r"<object>.*?</object>", "", p.read_text()))


def _unknown_category(doc: dict, _root: Path) -> None:
    doc["annotations"][0]["category_id"] = 99


def _nan_box(doc: dict, _root: Path) -> None:
    doc["annotations"][1]["bbox"] = [float("nan"), 3, 10, 10]


def _negative_size(doc: dict, _root: Path) -> None:
    doc["annotations"][2]["bbox"] = [10, 10, -5, 8]


def _missing_coco_image(doc: dict, _root: Path) -> None:
    doc["images"][0]["file_name"] = "nowhere.png"





def cases(Case) -> list:
    return [
        Case("det_xml_does_not_parse", "a VOC XML file that does not parse", "skip", "XML does not parse",
             _voc(lambda r: (r / "Annotations" / "scene0.xml").write_text("<annotation><object>"))),
        Case("det_box_x2_before_x1", "a box with x2 ≤ x1", "skip", "x2 ≤ x1",
             _voc(_box("<xmin>40</xmin><ymin>5</ymin><xmax>20</xmax><ymax>30</ymax>"))),
        Case("det_box_outside_image", "a box wholly outside its image", "skip", "lies outside",
             _voc(_box("<xmin>500</xmin><ymin>500</ymin><xmax>600</xmax><ymax>600</ymax>"))),
        Case("det_box_partly_outside", "a box partly outside its image (clipped)", "ok", "lies outside",
             _voc(_box("<xmin>-10</xmin><ymin>-5</ymin><xmax>30</xmax><ymax>20</ymax>"))),
        Case("det_box_not_numbers", "a box whose coordinates are not numbers", "skip", "not four numbers",
             _voc(_box("<xmin>a</xmin><ymin>5</ymin><xmax>20</xmax><ymax>30</ymax>"))),
        Case("det_annotation_without_image", "an annotation file whose image is missing", "skip", "is missing",
             _voc(_drop_image)),
        Case("det_image_without_annotation", "an image without an annotation file", "skip",
             "image without an annotation file", _voc(_stray_image)),
        Case("det_image_without_objects", "an image whose annotation has no objects (background)", "ok", "scene5",
             _voc(_no_objects)),
        Case("det_coco_unknown_category", "a COCO box whose category is not in 'categories'", "skip",
             "is not in 'categories'", _coco(_unknown_category)),
        Case("det_coco_nan_box", "a COCO box with a NaN coordinate", "skip", "NaN", _coco(_nan_box)),
        Case("det_coco_negative_size", "a COCO box with a negative width", "skip", "x2 ≤ x1", _coco(_negative_size)),
        Case("det_coco_missing_image", "a COCO image entry whose file is missing", "skip", "image file not found",
             _coco(_missing_coco_image)),
        Case("det_coco_not_json", "a COCO file that is not JSON", "error", "is not valid JSON",
             lambda tmp, run: [(tmp / "a.json").write_text("{'images': [") and "train", str(tmp / "a.json"), *DET]),
        Case("det_yolo_bad_lines", "YOLO label lines with an unknown class id and garbage", "skip",
             "is not in data.yaml", _yolo_bad),
        Case("det_class_only_in_test", "a class named in test but absent from train", "error",
             "appear in val/test but not in train", _unseen_class),
        Case("det_no_annotations", "a folder of images without any annotations", "error", "No box annotations found",
             _images_only),
        Case("det_table_without_boxes", "a CSV without box columns", "error", "is not a table of boxes", _text_table),
        Case("det_image_size_32", "--task detect --image-size 32 (scale jitter rounded to 0 px)", "ok", "",
             lambda tmp, run: ["train", str(make_boxes(tmp / "voc", "voc", n=8)), *DET, "--image-size", "32"]),
        Case("det_linear_probe", "--task detect with a strategy that cannot train a detector", "error",
             "does not apply to detection",
             lambda tmp, run: ["train", str(make_boxes(tmp / "voc", "voc", n=6)), *DET, "--strategy", "linear-probe"]),
        Case("det_backbone_without_stages", "--task detect on a backbone with no feature stages", "error",
             "no feature stages", lambda tmp, run: ["train", str(make_boxes(tmp / "voc", "voc", n=6)), *DET[:2],
                                                   "--backbone", "random:test_vit", "--image-size", "64"]),
    ]


def more_cases(Case) -> list:
    return [
        Case("det_shots", "--shots with --task detect", "error", "--shots does not apply to detection",
             lambda tmp, run: ["train", str(make_boxes(tmp / "voc", "voc", n=6)), *DET, "--shots", "2"]),
        Case("det_torchscript", "export --format torchscript of a detection run", "error",
             "not available for detection runs", _torchscript),
    ]


def _torchscript(tmp: Path, run: Path) -> list[str]:
    import transferkit as tk

    data = make_boxes(tmp / "voc", "voc", n=8)
    det = tk.fit(data, task="detect", backbone=TINY, image_size=64, epochs=1, batch_size=4, workers=0,
                 output=str(tmp / "detruns"))
    return ["export", str(det.path), "--format", "torchscript"]
