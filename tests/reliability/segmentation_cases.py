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


def _split_lists_without_train(root: Path) -> None:
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("scene0\nscene1\n")


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
        Case("seg_overlay_without_out", "predict --overlay without --out", "error", "--overlay goes with --out",
             lambda tmp, run: ["predict", str(run), str(tmp), "--overlay"]),
    ]
