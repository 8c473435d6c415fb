"""Bad inputs for domain adaptation (``--target``, ``--adapt``): a clear error, a listed skip, or a warning."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import TINY, make_boxes, make_folder

TRAIN = ["--backbone", TINY, "--image-size", "32", "--epochs", "1", "--workers", "0", "--batch-size", "8"]


def _source(tmp: Path) -> Path:
    return make_folder(tmp / "source", classes=2, per_class=8)


def _target(tmp: Path, **kw) -> Path:
    return make_folder(tmp / "target", classes=2, per_class=5, seed=1, **kw)


def _train(tmp: Path, target: Path, *extra: str) -> list[str]:
    return ["train", str(_source(tmp)), "--target", str(target), *TRAIN, *extra, "--output", str(tmp / "runs")]


def _junk_target(tmp: Path, run: Path) -> list[str]:
    t = tmp / "target"
    t.mkdir()
    (t / "notes.txt").write_text("not an image")
    (t / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return _train(tmp, t, "--adapt", "coral", "--strategy", "linear-probe")


def _single_photo_target(tmp: Path, run: Path) -> list[str]:
    return _train(tmp, _target(tmp) / "class0" / "0.png", "--adapt", "coral", "--strategy", "linear-probe")


def _one_image_target(method: str):
    def build(tmp: Path, run: Path) -> list[str]:
        t = tmp / "target"
        t.mkdir()
        shutil.copy(_target(tmp.parent / f"{tmp.name}-t") / "class0" / "0.png", t / "only.png")
        strategy = "finetune" if method == "dann" else "linear-probe"
        return _train(tmp, t, "--adapt", method, "--strategy", strategy)
    return build


def _unknown_class(tmp: Path, run: Path) -> list[str]:
    t = _target(tmp)
    shutil.copytree(t / "class0", t / "giraffe")
    return _train(tmp, t)


def _loose_files(tmp: Path, run: Path) -> list[str]:
    t = _target(tmp)
    for f in (t / "class1").iterdir():
        f.rename(t / f"loose_{f.name}")
    (t / "class1").rmdir()
    (t / "readme.md").write_text("# not an image")
    return _train(tmp, t, "--adapt", "mcc", "--strategy", "finetune")


def _shared_file(tmp: Path, run: Path) -> list[str]:
    args = _train(tmp, _target(tmp))
    shutil.copy(tmp / "source" / "class0" / "0.png", tmp / "target" / "class0" / "copied.png")
    return args


def _empty_source_class(tmp: Path, run: Path) -> list[str]:
    args = _train(tmp, _target(tmp))
    make_folder(tmp / "source", classes=3, per_class=8)
    for f in (tmp / "source" / "class2").iterdir():
        f.unlink()
    return args


def _csv_without_labels(tmp: Path, run: Path) -> list[str]:
    t = _target(tmp)
    rows = [str(p) for p in sorted(t.rglob("*.png"))]
    (tmp / "target.csv").write_text("path\n" + "\n".join(rows) + "\n")
    return _train(tmp, tmp / "target.csv")


def cases(Case) -> list:
    return [
        Case("da_target_missing", "--target that does not exist", "error", "does not exist",
             lambda tmp, run: _train(tmp, tmp / "nowhere")),
        Case("da_target_no_readable_inputs", "a target folder with no readable image", "error", "has no usable inputs",
             _junk_target),
        Case("da_target_unknown_class", "a labelled target class the source does not have", "warn",
             "unknown to the source", _unknown_class),
        Case("da_target_loose_files", "an unlabelled target: loose images (and a non-image) beside class folders",
             "skip", "readme.md", _loose_files),
        Case("da_target_csv_without_labels", "a target CSV with a path column and no label column", "ok", "",
             _csv_without_labels),
        Case("da_same_file_in_source_and_target", "one file both in the source and in the target", "warn",
             "also in the source data", _shared_file),
        Case("da_empty_source_class", "a source class folder with no usable images", "warn", "has no usable",
             _empty_source_class),
        Case("da_feature_method_with_finetune", "--adapt coral with --strategy finetune", "error",
             "works on frozen features", lambda tmp, run: _train(tmp, _target(tmp), "--adapt", "coral",
                                                                 "--strategy", "finetune")),
        Case("da_one_image_target_auto", "a target of one image with --adapt auto", "error",
             "has 1 usable input(s)", _one_image_target("auto")),
        Case("da_end_to_end_with_linear_probe", "--adapt dann with --strategy linear-probe", "error",
             "adapts while training", lambda tmp, run: _train(tmp, _target(tmp), "--adapt", "dann",
                                                              "--strategy", "linear-probe")),
        Case("da_select_dev_without_target", "--select dev (epochs ranked on the target) without --target", "error",
             "no --target was given", lambda tmp, run: ["train", str(_source(tmp)), *TRAIN, "--select", "dev",
                                                        "--strategy", "finetune", "--output", str(tmp / "runs")]),
        Case("da_select_dev_without_val", "--select dev on a source with no val split (--val-fraction 0)", "error",
             "a val split of at least 4", lambda tmp, run: _train(tmp, _target(tmp), "--select", "dev", "--strategy",
                                                                 "finetune", "--val-fraction", "0")),
        Case("da_adapt_auto_finetune_without_val", "--adapt auto --strategy finetune on a source with no val split "
             "(the criterion reads the target alone)", "ok", "",
             lambda tmp, run: _train(tmp, _target(tmp), "--adapt", "auto", "--strategy", "finetune",
                                     "--val-fraction", "0", "--epoch-steps", "1")),
        Case("da_epoch_steps_zero", "--epoch-steps 0", "error", "steps per epoch ≥ 1",
             lambda tmp, run: _train(tmp, _target(tmp), "--epoch-steps", "0", "--strategy", "finetune")),
        Case("da_adapt_without_target", "--adapt dann without --target", "error", "needs unlabelled target data",
             lambda tmp, run: ["train", str(_source(tmp)), *TRAIN, "--adapt", "dann", "--strategy", "finetune"]),
        Case("da_target_single_photo", "--target naming one photo instead of a folder", "error",
             "is neither a folder nor a table file", _single_photo_target),
        Case("da_one_image_target_coral", "a target of one image with --adapt coral", "error",
             "has 1 usable input(s)", _one_image_target("coral")),
        Case("da_one_image_target_adabn", "a target of one image with --adapt adabn", "error",
             "has 1 usable input(s)", _one_image_target("adabn")),
        Case("da_unknown_method", "--adapt with an unknown method", "error", "Unknown --adapt",
             lambda tmp, run: _train(tmp, _target(tmp), "--adapt", "magic")),
        Case("da_adabn_without_batchnorm", "--adapt adabn on a backbone without BatchNorm", "error",
             "has no BatchNorm layers", lambda tmp, run: _train(tmp, _target(tmp), "--adapt", "adabn",
                                                                "--backbone", "random:test_vit")),
        Case("da_detection_task", "--target with --task detect", "error", "not available for task detect",
             lambda tmp, run: ["train", str(make_boxes(tmp / "voc", "voc", n=8)), "--task", "detect", "--target",
                               str(_target(tmp)), *TRAIN, "--output", str(tmp / "runs")]),
        Case("da_compare_method_without_strategy", "compare --adapt dann with only linear-probe", "error",
             "can run --adapt dann", lambda tmp, run: ["compare", str(_source(tmp)), "--target", str(_target(tmp)),
                                                       "--strategies", "linear-probe", "--adapt", "none,dann",
                                                       *TRAIN, "--output", str(tmp / "runs")]),
        Case("da_oracle_single_input_class", "compare --adapt oracle with a target class of one labelled input",
             "error", "have a single input", _oracle_single),
    ]


def _oracle_single(tmp: Path, run: Path) -> list[str]:
    t = _target(tmp)
    for p in sorted((t / "class1").iterdir())[1:]:
        p.unlink()
    return ["compare", str(_source(tmp)), "--target", str(t), "--strategies", "linear-probe", "--adapt",
            "none,oracle", *TRAIN, "--output", str(tmp / "runs")]
