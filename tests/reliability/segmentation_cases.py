"""Bad masks and settings for ``--task segment``: each a listed skip (the path and the reason), a warning, or one
clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from conftest import TINY, make_masks

SEG = ["--task", "segment", "--backbone", TINY, "--image-size", "64", "--epochs", "1", "--batch-size", "4",
       "--workers", "0"]


def _folder(change, n: int = 12):
    """images/ + masks/ of ``n`` scenes with ``change(root)`` applied, trained on."""
    def build(tmp: Path, run: Path) -> list[str]:
        root = make_masks(tmp / "seg", "folders", n=n)
        change(root)
        return ["train", str(root), *SEG, "--output", str(tmp / "runs")]
    return build


def _mask(name: str, array):
    def change(root: Path) -> None:
        Image.fromarray(array).save(root / "masks" / name)
    return change


def _jpeg_masks(root: Path) -> None:
    for p in sorted((root / "masks").iterdir()):
        Image.open(p).convert("L").save(p.with_suffix(".jpg"), quality=75)
        p.unlink()


def _never_in_train(tmp: Path, run: Path) -> list[str]:
    make_masks(tmp / "d" / "train", "folders", n=8)
    test = make_masks(tmp / "d" / "test", "folders", n=4, seed=1)
    for root in (tmp / "d" / "train", test):
        (root / "classes.txt").write_text("background\nsquare\ndisc\nstar\n")
    Image.fromarray(np.full((60, 80), 3, np.uint8)).save(test / "masks" / "scene0.png")
    return ["train", str(tmp / "d"), *SEG, "--output", str(tmp / "runs")]


def _table(text: str):
    def build(tmp: Path, run: Path) -> list[str]:
        root = make_masks(tmp / "seg", "folders", n=8)
        (root / "pairs.csv").write_text(text)
        return ["train", str(root / "pairs.csv"), *SEG, "--output", str(tmp / "runs")]
    return build


def _rgb_jpeg(tmp: Path) -> Path:
    root = make_masks(tmp / "seg", "rgb", n=12)
    for p in sorted((root / "masks").iterdir()):
        Image.open(p).convert("RGB").save(p.with_suffix(".jpg"), quality=90)
        p.unlink()
    return root


def _split_lists_without_train(root: Path) -> None:
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("scene0\nscene1\n")


def _each_mask(fn):
    """Every mask rewritten as ``fn(mask array, path)`` returns (an array, a suffix or None)."""
    def change(root: Path) -> None:
        for p in sorted((root / "masks").iterdir()):
            a, suffix = fn(np.asarray(Image.open(p)), p)
            out = p.with_suffix(suffix) if suffix else p
            if suffix == ".jpg":
                Image.fromarray(a).save(out, quality=85)
            else:
                Image.fromarray(a).save(out)
            if out != p:
                p.unlink()
    return change


def _no_table(change):
    def both(root: Path) -> None:
        (root / "classes.txt").unlink()
        change(root)
    return both


def _antialiased(a, p):
    from PIL import ImageFilter

    binary = Image.fromarray(np.where(a > 0, 255, 0).astype(np.uint8))
    return np.asarray(binary.filter(ImageFilter.GaussianBlur(0.8))), None


def _stray(value: int, dtype=np.uint8):
    def fn(a, p):
        a = a.astype(dtype)
        if p.stem == "scene0":
            a = a.copy()
            a[0, 0] = value
        return a, None
    return fn


def _gradient_300(a, p):
    return (np.arange(a.size).reshape(a.shape) % 300).astype(np.uint16), None


def _exif_stored_frame(root: Path) -> None:
    """scene0's photo saved in its stored frame with EXIF orientation 6 (shown upright, turned); its mask drawn on the
    stored frame, as cameras and some tools save them."""
    img = Image.open(root / "images" / "scene0.png").rotate(90, expand=True)  # stored frame (60×80 → 80×60 …)
    mask = Image.open(root / "masks" / "scene0.png").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "images" / "scene0.png").unlink()
    img.save(root / "images" / "scene0.jpg", exif=exif.tobytes(), quality=95)
    mask.save(root / "masks" / "scene0.png")


def _dotted_stems_with_bom(root: Path) -> None:
    for folder in ("images", "masks"):
        for p in sorted((root / folder).iterdir()):
            p.rename(p.with_name(p.stem.replace("scene", "scan.") + p.suffix))
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\ufeff" + "".join(f"scan.{i}\n" for i in range(8)), encoding="utf-8")
    (root / "splits" / "val.txt").write_text("".join(f"scan.{i}\n" for i in range(8, 12)), encoding="utf-8")


def _coco(change):
    """COCO polygons with ``change(doc)`` applied to the JSON."""
    def build(tmp: Path, run: Path) -> list[str]:
        import json

        path = make_masks(tmp / "seg", "coco", n=12)
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))
        return ["train", str(path), *SEG, "--output", str(tmp / "runs")]
    return build


def _seg_of_first(value):
    def change(doc):
        doc["annotations"][0]["segmentation"] = value
    return change


def cases(Case) -> list:
    return [
        Case("seg_mask_size_differs", "a mask whose size differs from its image", "skip", "but its image is",
             _folder(_mask("scene0.png", np.zeros((10, 12), np.uint8)))),
        Case("seg_mask_value_outside_table", "mask values outside the class table", "skip", "outside the 3 classes",
             _folder(_mask("scene0.png", np.full((60, 80), 9, np.uint8)))),
        Case("seg_rgb_mask_without_colours", "an RGB colour mask without a colour table", "skip", "no colour table",
             _folder(_mask("scene0.png", np.full((60, 80, 3), (10, 200, 30), np.uint8)))),
        Case("seg_jpeg_masks", "JPEG masks (lossy: values smeared between classes)", "warn", "lossy", _folder(_jpeg_masks)),
        Case("seg_16bit_mask", "a 16-bit mask holding class indices", "ok", "scene0",
             _folder(lambda r: Image.fromarray(np.asarray(Image.open(r / "masks" / "scene0.png")).astype(np.uint16))
                               .save(r / "masks" / "scene0.png"))),
        Case("seg_image_without_mask", "an image without a mask", "skip", "no mask named",
             _folder(lambda r: (r / "masks" / "scene0.png").unlink())),
        Case("seg_mask_without_image", "a mask without an image", "skip", "without an image",
             _folder(lambda r: (r / "images" / "scene0.png").unlink())),
        Case("seg_all_background_mask", "an all-background mask (kept and counted)", "ok", "scene0",
             _folder(_mask("scene0.png", np.zeros((60, 80), np.uint8)))),
        Case("seg_all_ignore_mask", "a mask of 255 (ignore) only", "skip", "every pixel is 255",
             _folder(_mask("scene0.png", np.full((60, 80), 255, np.uint8)))),
        Case("seg_class_never_in_train", "a class never present in the training masks", "warn",
             "never appear in the training masks", _never_in_train),
        Case("seg_no_masks_folder", "a folder of images without masks", "error", "holds no images/ and masks/",
             _folder(lambda r: [p.unlink() for p in (r / "masks").iterdir()] and (r / "masks").rmdir())),
        Case("seg_table_without_mask_column", "a CSV of images without a mask column", "error", "has no mask column",
             _table("image,label\nimages/scene0.png,a\n")),
        Case("seg_table_partial_split", "a CSV whose split column is partly empty", "error", "empty split cell",
             _table("image,mask,split\nimages/scene0.png,masks/scene0.png,train\nimages/scene1.png,masks/scene1.png,\n")),
        Case("seg_split_lists_without_train", "split lists naming val but no train", "error", "but no train",
             _folder(_split_lists_without_train)),
        Case("seg_linear_probe", "--task segment with a strategy that cannot train a decoder", "error",
             "segmentation", lambda tmp, run: ["train", str(make_masks(tmp / "seg", n=8)), *SEG, "--strategy",
                                               "linear-probe"]),
        Case("seg_unknown_head", "--task segment --head mlp:64", "error", "Unknown segmentation --head",
             lambda tmp, run: ["train", str(make_masks(tmp / "seg", n=8)), *SEG, "--head", "mlp:64"]),
        Case("seg_backbone_without_stages", "--task segment on a backbone without five stages", "error",
             "no feature stages at strides", lambda tmp, run: ["train", str(make_masks(tmp / "seg", n=8)), *SEG[:2],
                                                               "--backbone", "random:test_vit", "--image-size", "64"]),
        Case("seg_shots", "--shots with --task segment", "error", "--shots does not apply to segmentation",
             lambda tmp, run: ["train", str(make_masks(tmp / "seg", n=8)), *SEG, "--shots", "2"]),
        Case("seg_antialiased_binary", "0/255 masks with anti-aliased edges (values 1–254): thresholded, the "
             "foreground learned", "ok", "scene0", _folder(_no_table(_each_mask(_antialiased)))),
        Case("seg_stray_pixel", "one stray pixel of value 200 in index masks: ignore, listed", "warn",
             "stray values", _folder(_each_mask(_stray(200)))),
        Case("seg_stray_pixel_3000", "one pixel of 3000 in 16-bit masks without a class table (was 3001 classes)",
             "warn", "stray values", _folder(_no_table(_each_mask(_stray(3000, np.uint16))))),
        Case("seg_16bit_id_300", "16-bit masks whose classes are 0, 1 and 300 (300 wrapped to 44 as uint8)", "ok",
             "scene0", _folder(_no_table(_each_mask(lambda a, p: (np.where(a == 2, 300, a.astype(np.uint16)).astype(np.uint16),
                                                                  None))))),
        Case("seg_over_255_classes", "16-bit masks holding 300 classes", "error", "at most 255 classes",
             _folder(_no_table(_each_mask(_gradient_300)))),
        Case("seg_jpeg_index_masks", "JPEG index masks (0/1/2) without a class table: indices, not binary", "warn",
             "lossy", _folder(_no_table(_each_mask(lambda a, p: (a.astype(np.uint8), ".jpg"))))),
        Case("seg_jpeg_colour_masks", "RGB colour masks saved as JPEG, with a colour table", "warn", "lossy",
             lambda tmp, run: ["train", str(_rgb_jpeg(tmp)), *SEG, "--output", str(tmp / "runs")]),
        Case("seg_classes_comment", "classes.txt with a # comment line", "ok", "scene0",
             _folder(lambda r: (r / "classes.txt").write_text("# name per index\nbackground\nsquare\ndisc\n"))),
        Case("seg_classes_duplicate", "classes.txt naming a class twice", "error", "twice",
             _folder(lambda r: (r / "classes.txt").write_text("background\nsquare\nsquare\n"))),
        Case("seg_labelmap_bad_line", "a labelmap.txt line with a broken colour", "error", "line 3",
             _folder(lambda r: (r / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                                               "square:230,60::\ndisc:60,200,230::\n"))),
        Case("seg_split_list_bom_dotted_stems", "split lists with a UTF-8 BOM, image stems holding dots (scan.01)",
             "ok", "not listed", _folder(_dotted_stems_with_bom)),
        Case("seg_exif_stored_frame", "a mask drawn on the stored frame of an EXIF-rotated photo", "ok",
             "but its image is", _folder(_exif_stored_frame)),
        Case("seg_table_image_twice", "a CSV listing one image twice with two masks", "skip", "listed again",
             _table("image,mask\n" + "".join(f"images/scene{i}.png,masks/scene{i}.png\n" for i in range(8))
                    + "images/scene0.png,masks/scene1.png\n")),
        Case("seg_two_images_one_mask", "a.png and a.jpg beside one mask a.png", "skip", "a second image for the mask",
             _folder(lambda r: Image.open(r / "images" / "scene0.png").convert("RGB").save(r / "images" / "scene0.jpg"))),
        Case("seg_mask_header_100mpx", "a mask whose header claims 100 Mpx beside a small image (never decoded)",
             "skip", "decompression-bomb pixel limit", _folder(lambda r: Image.new("1", (10000, 10000)).save(r / "masks" / "scene0.png"))),
        Case("seg_coco_unknown_category", "COCO: an annotation of an unknown category", "skip",
             "which the file does not list", _coco(lambda d: d["annotations"][0].update(category_id=99))),
        Case("seg_coco_image_without_id", "COCO: an image entry without id", "skip", "without a whole-number id",
             _coco(lambda d: d["images"][0].pop("id"))),
        Case("seg_coco_empty_segmentation", "COCO: segmentation: []", "skip", "empty segmentation",
             _coco(_seg_of_first([]))),
        Case("seg_coco_two_point_polygon", "COCO: a 2-point polygon", "skip", "polygon of 2 point",
             _coco(_seg_of_first([[1, 1, 5, 5]]))),
        Case("seg_coco_rle_size", "COCO: an RLE whose size differs from the image", "skip", "RLE of size",
             _coco(_seg_of_first({"size": [10, 10], "counts": [0, 100]}))),
        Case("seg_coco_string_image", "COCO: a string in images", "skip", "without a whole-number id",
             _coco(lambda d: d["images"].append("scene99.png"))),
        Case("seg_coco_category_without_id", "COCO: a category without id", "skip", "category without",
             _coco(lambda d: d["categories"].append({"name": "ghost"}))),
        Case("seg_coco_not_json", "COCO: a file that is not JSON", "error", "not a COCO annotation file",
             _coco(lambda d: d.clear() or d.update(images="none"))),
        Case("seg_overlay_without_out", "predict --overlay without --out", "error", "--overlay goes with --out",
             lambda tmp, run: ["predict", str(run), str(tmp), "--overlay"]),
    ]
