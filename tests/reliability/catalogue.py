"""The bad-input catalogue: each case builds an input, runs the real CLI on it, and says what a user must see.

``expect`` is one of:
- ``skip``: the command succeeds and the log names the skipped path with a reason;
- ``error``: exit code 2 and one line ``error: …`` that contains ``fragment``; no traceback;
- ``ok``: a valid but unusual input that must be accepted;
- ``warn``: accepted, and the log warns with ``fragment``;
- ``usage``: a command-line usage error: exit code 2 and click's usual message, ending ``Error: …`` with
  ``fragment`` (the usage line and the hint to ``--help`` before it where click gives them); no traceback.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import TINY, make_folder, make_tiny_bert  # noqa: E402
from reliability import (adaptation_cases, asr_cases, audio_cases, detection_cases,  # noqa: E402
                         detection_format_cases, segmentation_cases, tune_cases)

TRAIN = ["--backbone", TINY, "--image-size", "32", "--epochs", "1", "--workers", "0"]


@dataclass
class Case:
    name: str
    input: str
    expect: str  # skip | error | ok | warn | usage
    fragment: str
    build: Callable[[Path, Path], list[str]]  # (tmp, finished run) → CLI arguments


def _data(tmp: Path) -> Path:
    return make_folder(tmp / "data", classes=2, per_class=8)


def _with_file(name: str, write: Callable[[Path], None]):
    def build(tmp: Path, run: Path) -> list[str]:
        d = _data(tmp)
        write(d / "class0" / name)
        return ["train", str(d), *TRAIN, "--output", str(tmp / "runs")]
    return build


def _jpeg_bytes(size=(40, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 100 if mode != "RGB" else (10, 200, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _exif_rotated(p: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (30, 20), "red").save(p, exif=exif.tobytes())


def _bomb(p: Path) -> None:
    Image.new("1", (15000, 15000)).save(p)  # 225 Mpx: past PIL's 2× decompression-bomb limit; tiny file


def _animated(p: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(p, save_all=True, append_images=frames[1:])


def _symlink_loop(tmp: Path, run: Path) -> list[str]:
    d = _data(tmp)
    (d / "class0" / "loop").symlink_to(d / "class0", target_is_directory=True)
    (d / "class1" / "dangling.png").symlink_to(tmp / "nowhere.png")
    return ["train", str(d), *TRAIN, "--output", str(tmp / "runs")]


def _empty_class(tmp: Path, run: Path) -> list[str]:
    d = make_folder(tmp / "data", classes=3, per_class=8)
    for f in (d / "class2").iterdir():
        f.unlink()
    return ["train", str(d), *TRAIN, "--output", str(tmp / "runs")]


def _one_class(tmp: Path, run: Path) -> list[str]:
    return ["train", str(make_folder(tmp / "data", classes=1, per_class=8)), *TRAIN]


def _single_image_class(tmp: Path, run: Path) -> list[str]:
    d = _data(tmp)
    for f in list((d / "class1").iterdir())[1:]:
        f.unlink()
    return ["train", str(d), *TRAIN]


def _csv(text: str):
    def build(tmp: Path, run: Path) -> list[str]:
        _data(tmp)
        (tmp / "list.csv").write_text(text)
        return ["train", str(tmp / "list.csv"), *TRAIN]
    return build


def _text_file(raw: bytes):
    def build(tmp: Path, run: Path) -> list[str]:
        (tmp / "texts.csv").write_bytes(raw)
        return ["train", str(tmp / "texts.csv"), *TRAIN, "--backbone", "packaged:minilm"]
    return build


def _text_model(sentence_config: str):
    """A 1-layer BERT folder (MiniLM's tokenizer) whose sentence-transformers config is ``sentence_config``."""
    def build(tmp: Path, run: Path) -> list[str]:
        folder = make_tiny_bert(tmp / "encoder", hidden=16, layers=1)
        (folder / "sentence_bert_config.json").write_text(sentence_config)
        return _texts("", backbone=f"hf:{folder}")(tmp, run)
    return build


def _unseen_labels(tmp: Path, run: Path) -> list[str]:
    other = make_folder(tmp / "other", classes=3, per_class=4)
    (other / "class2").rename(other / "zebra")
    return ["evaluate", str(run), str(other)]


def _weights(write: Callable[[Path], None], arch: str = "test_efficientnet"):
    def build(tmp: Path, run: Path) -> list[str]:
        d = _data(tmp)
        write(tmp / "w.pt")
        return ["train", str(d), "--backbone", f"file:{tmp / 'w.pt'}", "--arch", arch, "--image-size", "32",
                "--epochs", "1"]
    return build


def _truncated_weights(p: Path) -> None:
    import timm
    import torch

    torch.save(timm.create_model("test_efficientnet").state_dict(), p)
    p.write_bytes(p.read_bytes()[:5000])


def _other_arch(p: Path) -> None:
    import timm
    import torch

    torch.save(timm.create_model("test_resnet").state_dict(), p)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def _pickled_code(p: Path) -> None:
    import torch

    torch.save({"weight": _Evil()}, p)


def _config_unknown(tmp: Path, run: Path) -> list[str]:
    (tmp / "c.yaml").write_text("epochs: 1\nlearning_rate: 0.1\n")
    return ["train", str(_data(tmp)), "--config", str(tmp / "c.yaml"), *TRAIN]


def _run_without_weights(tmp: Path, run: Path) -> list[str]:
    import shutil

    copy = tmp / "copy"
    shutil.copytree(run, copy)
    (copy / "model.safetensors").unlink()
    return ["predict", str(copy), str(_data(tmp) / "class0")]


def _fewer_labels(tmp: Path, run: Path) -> list[str]:
    import json
    import shutil

    copy = tmp / "copy"
    shutil.copytree(run, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["labels"] = meta["labels"][:1]
    (copy / "model.json").write_text(json.dumps(meta))
    return ["app", str(copy), "--port", "1"]


def _layout_as_classes(fmt: str):
    def build(tmp: Path, run: Path) -> list[str]:
        from conftest import make_masks

        root = make_masks(tmp / "seg", fmt, n=8)
        return ["train", str(root), *TRAIN, "--output", str(tmp / "runs")]
    return build


def _predict_non_image(tmp: Path, run: Path) -> list[str]:
    (tmp / "notes.jpg").write_text("hello")
    return ["predict", str(run), str(tmp / "notes.jpg")]


def _texts(body: str, name: str = "texts.tsv", backbone: str = "packaged:minilm"):
    """A small text table (two learnable classes) with ``body`` appended: read through the CLI."""
    def build(tmp: Path, run: Path) -> list[str]:
        good = "".join(f"win cash prize {i}\tspam\nlunch at noon {i}\tham\n" for i in range(8))
        (tmp / name).write_text("text\tlabel\n" + good + body, encoding="utf-8")
        return ["train", str(tmp / name), "--backbone", backbone, "--output", str(tmp / "runs")]
    return build


NUMBER_CASES = [
    Case(f"flag_{flag.strip('-').replace('-', '_')}_{value.replace('-', 'minus').replace('.', '_')}",
         f"{flag} {value}", "error", fragment, lambda tmp, run, f=flag, v=value: ["train", str(_data(tmp)), *TRAIN, f, v])
    for flag, value, fragment in [("--lr", "inf", "not a finite number"), ("--lr", "nan", "not a finite number"),
                                  ("--shots", "0", "shots=0 is out of range"), ("--shots", "-1", "shots=-1"),
                                  ("--image-size", "0", "image_size=0"), ("--image-size", "10000", "image_size=10000"),
                                  ("--label-smoothing", "2", "label_smoothing=2.0"),
                                  ("--split-seed", "-1", "split_seed=-1"), ("--workers", "-1", "workers=-1"),
                                  ("--backbone-lr-mult", "-1", "backbone_lr_mult=-1.0"),
                                  ("--layer-decay", "-0.5", "layer_decay=-0.5")]
] + [
    Case("config_wrong_type", "a config file with patience: five", "error", "patience='five' is not a whole number",
         lambda tmp, run: [(tmp / "c.yaml").write_text("patience: five\n") and "train", str(_data(tmp)), *TRAIN,
                           "--config", str(tmp / "c.yaml")]),
]

def _run_copy(tmp: Path, run: Path, change=None) -> Path:
    import shutil

    copy = tmp / "copy"
    shutil.copytree(run, copy)
    if change:
        change(copy)
    return copy


def _moved_data(tmp: Path, run: Path) -> list[str]:
    import json

    copy = _run_copy(tmp, run)
    splits = json.loads((copy / "splits.json").read_text())
    for part in splits.values():
        part["inputs"] = [str(tmp / "moved" / Path(p).name) for p in part["inputs"]]
    (copy / "splits.json").write_text(json.dumps(splits))
    return ["evaluate", str(copy)]


def _truncated_checkpoint(tmp: Path, run: Path) -> list[str]:
    def change(copy: Path) -> None:
        (copy / "metrics.json").unlink()
        (copy / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    return ["train", "--resume", str(_run_copy(tmp, run, change))]


def _model_json_missing_key(tmp: Path, run: Path) -> list[str]:
    import json

    def change(copy: Path) -> None:
        meta = json.loads((copy / "model.json").read_text())
        del meta["labels"]
        (copy / "model.json").write_text(json.dumps(meta))
    return ["predict", str(_run_copy(tmp, run, change)), str(_data(tmp) / "class0")]


def _class_named_train(tmp: Path, run: Path) -> list[str]:
    d = make_folder(tmp / "data", classes=3, per_class=8)
    (d / "class2").rename(d / "train")  # a class, not a split: the others are classes too
    return ["train", str(d), *TRAIN]


def _validation_folder(tmp: Path, run: Path) -> list[str]:
    d = make_folder(tmp / "data", classes=2, per_class=9, split=True)
    (d / "val").rename(d / "validation")
    return ["train", str(d), *TRAIN]


def _leaky(tmp: Path, run: Path) -> list[str]:
    import shutil

    d = make_folder(tmp / "data", classes=2, per_class=9, split=True)
    shutil.copy(d / "train" / "class0" / "0.png", d / "val" / "class0" / "copy.png")
    return ["train", str(d), *TRAIN, "--on-leak", "error", "--output", str(tmp / "runs")]


def _train_only(tmp: Path, run: Path) -> list[str]:
    d = make_folder(tmp / "data", classes=2, per_class=9, split=True)
    import shutil

    shutil.rmtree(d / "val")
    return ["train", str(d), *TRAIN, "--test-fraction", "0.2"]


MESSAGE_CASES = [
    Case("serve_bad_port", "serve --port 99999", "error", "is not a TCP port",
         lambda tmp, run: ["serve", str(run), "--port", "99999"]),
    Case("output_is_file", "--output an existing file", "error", "--output", lambda tmp, run: [
        (tmp / "out").write_text("x") and "train", str(_data(tmp)), *TRAIN, "--output", str(tmp / "out")]),
    Case("vit_wrong_size", "an image size a fixed-size ViT cannot take", "error", "cannot take inputs of shape",
         lambda tmp, run: ["train", str(_data(tmp)), "--backbone", "random:vit_tiny_patch16_224", "--image-size", "96",
                           "--epochs", "1", "--workers", "0", "--output", str(tmp / "runs")]),
    Case("image_run_on_text_file", "evaluate an image run on a text file", "error", "no column 'path'",
         lambda tmp, run: [(tmp / "t.csv").write_text("text,label\nhello,class0\n") and "evaluate", str(run),
                           str(tmp / "t.csv")]),
    Case("config_is_folder", "--config naming a folder", "error", "is a folder",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--config", str(tmp)]),
    Case("config_yaml_line", "a config file with a YAML syntax error", "error", "c.yaml:2:",
         lambda tmp, run: [(tmp / "c.yaml").write_text("epochs: 2\n  lr: 1\n") and "train", str(_data(tmp)),
                           *TRAIN, "--config", str(tmp / "c.yaml")]),
    Case("checkpoint_without_config", "a folder holding only checkpoint.pt", "error", "has checkpoint.pt but no config.yaml",
         lambda tmp, run: [(tmp / "r").mkdir() or (tmp / "r" / "checkpoint.pt").write_bytes(b"x") and "train",
                           "--resume", str(tmp / "r")]),
    Case("presplit_without_eval", "a train/ folder alone with --test-fraction", "error", "is split already",
         _train_only),
    Case("processes_zero", "--processes 0", "error", "processes=0 is out of range",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--processes", "0", "--output", str(tmp / "runs")]),
    Case("processes_uneven_batch", "--processes 2 with a batch size that does not split in two", "error",
         "cannot be split evenly over 2 processes",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--strategy", "finetune", "--processes", "2",
                           "--batch-size", "3", "--output", str(tmp / "runs")]),
]

RUN_CASES = [
    Case("leak_refused", "a training image copied into val, with --on-leak error", "error", "both in training and in val",
         _leaky),
    Case("resume_with_flags", "--resume with DATA or flags", "error", "cannot change them",
         lambda tmp, run: ["train", str(_data(tmp)), "--resume", str(run), "--epochs", "3"]),
    Case("class_named_train", "a class folder named train beside other classes", "ok", "", _class_named_train),
    Case("validation_folder", "a validation/ folder (read as val)", "ok", "", _validation_folder),
    Case("compare_zero_seeds", "compare --seeds 0", "error", "seeds=0 is too small",
         lambda tmp, run: ["compare", str(_data(tmp)), *TRAIN, "--seeds", "0", "--output", str(tmp / "runs")]),
    Case("compare_bad_shots_list", "compare --shots 8,x", "error", "is not a list of counts",
         lambda tmp, run: ["compare", str(_data(tmp)), *TRAIN, "--shots", "8,x", "--output", str(tmp / "runs")]),
    Case("compare_zero_shots_in_list", "compare --shots 0,8", "error", "is not a list of counts",
         lambda tmp, run: ["compare", str(_data(tmp)), *TRAIN, "--shots", "0,8", "--output", str(tmp / "runs")]),
    Case("compare_no_strategies", "compare with an empty --strategies", "error", "No strategies",
         lambda tmp, run: ["compare", str(_data(tmp)), *TRAIN, "--strategies", ",", "--output", str(tmp / "runs")]),
    Case("compare_late_bad_strategy", "a bad strategy name after good ones (refused before any training)", "error",
         "Unknown strategy 'finetuning'",
         lambda tmp, run: ["compare", str(_data(tmp)), *TRAIN, "--strategies", "scratch,finetuning",
                           "--output", str(tmp / "runs")]),
    Case("compare_existing_name", "compare again with an existing --name", "error", "already exists",
         lambda tmp, run: [(tmp / "cmp" / "c").mkdir(parents=True) or "compare", str(_data(tmp)), *TRAIN,
                           "--name", "c", "--output", str(tmp / "cmp")]),
    Case("export_max_check_0", "export --max-check 0", "error", "checks nothing",
         lambda tmp, run: ["export", str(run), "--max-check", "0"]),
    Case("export_out_is_file", "export --out an existing file", "error", "is a file",
         lambda tmp, run: [(tmp / "f").write_text("x") and "export", str(run), "--out", str(tmp / "f")]),
    Case("export_out_is_run", "export --out the run folder", "error", "the run folder itself",
         lambda tmp, run: ["export", str(run), "--out", str(run)]),
    Case("predict_topk_0", "predict --topk 0", "error", "--topk 0 shows nothing",
         lambda tmp, run: ["predict", str(run), str(_data(tmp) / "class0"), "--topk", "0"]),
    Case("predict_text_on_image_run", "--text on an image run", "error", "--text and --file are for text runs",
         lambda tmp, run: ["predict", str(run), "--text", "hello"]),
    Case("evaluate_moved_data", "evaluate after the data folder moved", "error", "moved since training", _moved_data),
    Case("resume_truncated_checkpoint", "--resume with a truncated checkpoint.pt", "error", "checkpoint.pt is damaged",
         _truncated_checkpoint),
    Case("model_json_missing_key", "a model.json missing a key", "error", "lacks labels", _model_json_missing_key),
]

TABLE_CASES = [
    Case("tsv_unbalanced_quote", "a TSV whose text opens a quote it never closes", "error", "a quote opened on this line",
         _texts('"free entry never closed\tspam\n' + "".join(f"row {i}\tham\n" for i in range(5)))),
    Case("table_field_count", "a row with more fields than the header", "skip", "field(s), the header has 2",
         _texts("one\ttwo\tthree\n")),
    Case("table_unknown_split", "a split value that is not train/val/test", "error", "is not one of train, val, test",
         lambda tmp, run: [(tmp / "s.csv").write_text("text,label,split\na,x,train\nb,y,holdout\n") and "train",
                           str(tmp / "s.csv"), "--backbone", "packaged:minilm"]),
    Case("table_missing_label", "rows whose label is empty or nan", "skip", "no label", _texts("orphan\tnan\n")),
    Case("table_bad_quoting_flag", "--quoting with an unknown value", "error", "quoting='smart'",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--quoting", "smart"]),
]

CASES = [
    Case("truncated_jpeg", "a JPEG cut in half", "skip", "damaged image",
         _with_file("cut.jpg", lambda p: p.write_bytes(_jpeg_bytes()[:300]))),
    Case("zero_byte", "a zero-byte .jpg", "skip", "empty file", _with_file("zero.jpg", lambda p: p.write_bytes(b""))),
    Case("gif", "a GIF placeholder", "skip", "GIF files are not used",
         _with_file("x.gif", lambda p: Image.new("P", (8, 8)).save(p))),
    Case("animated_png", "an animated PNG", "skip", "animated image", _with_file("anim.png", _animated)),
    Case("thumbs_db", "Thumbs.db in a class folder", "skip", "not an image file type",
         _with_file("Thumbs.db", lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0" * 10))),
    Case("ds_store", ".DS_Store in a class folder", "skip", "not an image file type",
         _with_file(".DS_Store", lambda p: p.write_bytes(b"\x00\x00\x00\x01Bud1"))),
    Case("text_as_jpg", "a text file named .jpg", "skip", "cannot be decoded",
         _with_file("readme.jpg", lambda p: p.write_text("this is text"))),
    Case("dangling_symlink_and_loop", "a symlink loop and a dangling symlink", "skip", "dangling.png", _symlink_loop),
    Case("postscript_as_jpg", "a PostScript file named .jpg (never reaches Ghostscript)", "skip", "format other than",
         _with_file("photo.jpg", lambda p: p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"))),
    Case("decompression_bomb", "an image over the decompression-bomb limit", "skip", "decompression-bomb",
         _with_file("bomb.png", _bomb)),
    Case("cmyk", "a CMYK JPEG", "ok", "", _with_file("cmyk.jpg", lambda p: p.write_bytes(_jpeg_bytes(mode="CMYK")))),
    Case("sixteen_bit", "a 16-bit grayscale PNG", "ok", "",
         _with_file("i16.png", lambda p: Image.fromarray(np.full((20, 20), 30000, np.uint16)).save(p))),
    Case("one_pixel", "a 1×1 image", "ok", "", _with_file("dot.png", lambda p: Image.new("RGB", (1, 1)).save(p))),
    Case("exif_rotated", "an EXIF-rotated photo", "ok", "", _with_file("rot.jpg", _exif_rotated)),
    Case("unicode_names", "unicode and spaces in file names", "ok", "",
         _with_file("fourmi été 1.png", lambda p: Image.new("RGB", (9, 9), "blue").save(p))),
    Case("rgba_palette", "RGBA and palette PNGs", "ok", "",
         _with_file("rgba.png", lambda p: Image.new("RGBA", (9, 9), (0, 0, 0, 0)).save(p))),
    Case("empty_class_folder", "an empty class folder", "ok", "", _empty_class),
    Case("missing_folder", "a data folder that does not exist", "error", "does not exist",
         lambda tmp, run: ["train", str(tmp / "nope"), *TRAIN]),
    Case("file_not_folder", "a file of unknown type as DATA", "error", "neither a folder nor a table",
         lambda tmp, run: [(tmp / "x.bin").write_bytes(b"1") and "train", str(tmp / "x.bin"), *TRAIN]),
    Case("one_class", "a dataset with one class", "error", "at least 2 classes", _one_class),
    Case("single_image_class", "a class with a single image", "error", "too few to split", _single_image_class),
    Case("csv_missing_columns", "a CSV without the named columns", "error", "no column", _csv("file,kind\na.png,x\n")),
    Case("csv_unknown_paths", "a CSV naming files that do not exist", "error", "does not exist",
         _csv("path,label\nmissing/a.png,x\nmissing/b.png,y\n")),
    Case("non_utf8_text", "a text file that is not UTF-8", "error", "is not valid UTF-8",
         _text_file(b"text,label\nfine,a\ncaf\xe9 cr\xe8me,b\n")),
    Case("empty_texts", "a text file whose texts are all empty", "error", "class",
         _text_file(b"text,label\n,a\n ,b\n")),
    Case("text_model_bad_json", "a text model folder whose sentence_bert_config.json is not JSON", "error",
         "sentence_bert_config.json is not readable JSON", _text_model('{"max_seq_length": 256,')),
    Case("text_model_bad_length", "a text model folder declaring max_seq_length: \"long\"", "error",
         "declares max_seq_length='long'", _text_model('{"max_seq_length": "long"}')),
    Case("unseen_labels", "labels at evaluation unseen in training", "error", "not seen in training", _unseen_labels),
    Case("truncated_weights", "a truncated weights file", "error", "damaged", _weights(_truncated_weights)),
    Case("other_architecture", "weights for another architecture", "error", "which the architecture does not have",
         _weights(_other_arch)),
    Case("pickled_code", "a pickled weights file that would run code", "error", "Refused to load",
         _weights(_pickled_code)),
    Case("config_unknown_key", "a config file with an unknown key", "error", "learning_rate", _config_unknown),
    Case("run_without_weights", "a run folder missing its weights", "error", "has no model.safetensors",
         _run_without_weights),
    Case("app_fewer_labels", "app (or predict) on a run whose model.json lists fewer labels than its weights", "error",
         "do not fit", _fewer_labels),
    Case("budget_fixed_strategy", "--budget with a fixed strategy (nothing to choose)", "warn", "has no effect",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--strategy", "finetune", "--budget", "60",
                           "--output", str(tmp / "runs")]),
    Case("track_uri_without_track", "--track-uri without --track", "warn", "has no effect without --track",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--strategy", "finetune", "--track-uri",
                           str(tmp / "mlruns"), "--output", str(tmp / "runs")]),
    Case("track_named_twice", "--track tensorboard,tensorboard (logged once)", "ok", "",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--strategy", "finetune", "--track",
                           "tensorboard,tensorboard", "--output", str(tmp / "runs")]),
    Case("masks_layout_as_classes", "images/ + masks/ trained without --task segment", "error", "Add --task segment",
         _layout_as_classes("folders")),
    Case("voc_root_as_classes", "a Pascal VOC root trained without --task segment", "error", "Add --task segment",
         _layout_as_classes("voc")),
    Case("not_a_run_folder", "a folder that is not a run", "error", "not a transferkit run folder",
         lambda tmp, run: ["predict", str(tmp), str(tmp)]),
    Case("unknown_backbone", "an unknown backbone name", "error", "Unknown packaged backbone",
         lambda tmp, run: ["train", str(_data(tmp)), "--backbone", "packaged:resnet9000"]),
    Case("unknown_strategy", "an unknown strategy", "error", "Unknown strategy",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--strategy", "finetuning"]),
    Case("resume_finished", "--resume on a finished run", "error", "already finished",
         lambda tmp, run: ["train", "--resume", str(run)]),
    Case("predict_non_image", "predict on a file that is not an image", "error", "Cannot read", _predict_non_image),
    Case("bad_choice", "an invalid option value", "error", "augment='heavy'",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--augment", "heavy"]),
    Case("negative_cache_bound", "a negative image-cache bound", "error", "image_cache_mb=-1",
         lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--image-cache-mb", "-1"]),
]
CASES += audio_cases.cases(Case) + TABLE_CASES + NUMBER_CASES + RUN_CASES + MESSAGE_CASES + detection_cases.cases(Case) + detection_cases.more_cases(Case)
CASES += segmentation_cases.cases(Case) + detection_format_cases.cases(Case) + tune_cases.cases(Case)
CASES += adaptation_cases.cases(Case) + asr_cases.cases(Case)

USAGE_CASES = [  # typer's own copy of click raises its own exceptions: each must end as click's message, exit 2
    Case("usage_misspelt_option", "a misspelt option (--epoch)", "usage", "No such option: --epoch",
         lambda tmp, run: ["train", str(tmp), "--epoch", "3"]),
    Case("usage_unknown_command", "an unknown command (trian)", "usage", "No such command 'trian'",
         lambda tmp, run: ["trian", str(tmp)]),
    Case("usage_missing_argument", "evaluate without its run folder", "usage", "Missing argument",
         lambda tmp, run: ["evaluate"]),
    Case("usage_wrong_type", "--epochs abc", "usage", "Invalid value for '--epochs'",
         lambda tmp, run: ["train", str(tmp), "--epochs", "abc"]),
    Case("usage_option_without_value", "--topk with no number", "usage", "requires an argument",
         lambda tmp, run: ["predict", str(run), "x.png", "--topk"]),
]
CASES += USAGE_CASES
CASES.append(Case("shots_above_class_size", "--shots 50 where classes have 5 training images", "warn",
                  "have fewer training items, and train on all they have",
                  lambda tmp, run: ["train", str(_data(tmp)), *TRAIN, "--shots", "50", "--output", str(tmp / "runs")]))
