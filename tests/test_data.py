from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import CsvImageData, ImageFolderData, check_image, load_rgb, stratified_split
from transferkit.errors import DataError

from conftest import make_folder


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def test_every_mode_loads_as_rgb(tmp_path):
    base = Image.new("RGB", (10, 6), (200, 30, 30))
    paths = {
        "L": _save(base.convert("L"), tmp_path / "l.png"),
        "P": _save(base.convert("P"), tmp_path / "p.png"),
        "RGBA": _save(base.convert("RGBA"), tmp_path / "rgba.png"),
        "CMYK": _save(base.convert("CMYK"), tmp_path / "cmyk.jpg"),
        "I;16": _save(Image.fromarray(np.full((6, 10), 40000, np.uint16)), tmp_path / "i16.png"),
    }
    for mode, p in paths.items():
        img = load_rgb(p)
        assert img.mode == "RGB" and img.size == (10, 6), mode
    # 16-bit keeps its brightness: 40000/65535 of full scale, not clipped to white
    assert 150 < np.asarray(load_rgb(paths["I;16"]))[0, 0, 0] < 160
    # transparent pixels become white, not their hidden colour
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert tuple(np.asarray(load_rgb(_save(clear, tmp_path / "clear.png")))[0, 0]) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    p = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(p).size == (10, 20)


def test_bad_files_are_listed_and_skipped(tmp_path):
    root = make_folder(tmp_path / "d", classes=2, per_class=6)
    cls = root / "class0"
    (cls / "empty.jpg").write_bytes(b"")
    (cls / "notes.jpg").write_text("not an image")
    (cls / "Thumbs.db").write_bytes(b"\x00" * 50)
    Image.new("RGB", (8, 8)).save(cls / "anim.gif")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buf, "JPEG")
    (cls / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    data = ImageFolderData(root, val_fraction=0.2, test_fraction=0.2).setup()
    bad = {Path(p).name: r for p, r in data.bad_files_}
    assert set(bad) == {"empty.jpg", "notes.jpg", "Thumbs.db", "anim.gif", "truncated.jpg"}
    assert "0 bytes" in bad["empty.jpg"] and "GIF" in bad["anim.gif"]
    used = [p for s in data.splits_.values() for p in s.inputs]
    assert len(used) == 12 and not any(Path(p).name in bad for p in used)
    with pytest.raises(DataError, match="--on-bad-file skip"):
        ImageFolderData(root, on_bad_file="error").setup()


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    p = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert "decompression-bomb" in check_image(p)


def test_presplit_layout_and_classes(tmp_path):
    root = make_folder(tmp_path / "d", classes=3, per_class=9, split=True)
    data = ImageFolderData(root).setup()
    assert data.presplit_ and data.classes_ == ["class0", "class1", "class2"]
    assert len(data.splits_["train"]) == 18 and len(data.splits_["val"]) == 9 and len(data.splits_["test"]) == 0
    assert data.eval_split == "val"


def test_split_is_stratified_disjoint_and_seeded():
    labels = [0] * 20 + [1] * 10 + [2] * 5
    a = stratified_split(labels, 0.2, 0.2, seed=1)
    b = stratified_split(labels, 0.2, 0.2, seed=1)
    c = stratified_split(labels, 0.2, 0.2, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    allidx = np.concatenate(list(a.values()))
    assert sorted(allidx) == list(range(35))
    for k in ("val", "test"):
        got = np.bincount(np.asarray(labels)[a[k]], minlength=3)
        assert got.tolist() == [4, 2, 1]


def test_too_small_class_and_single_class_errors(tmp_path):
    with pytest.raises(DataError, match="Class 'b' has 2 item"):
        stratified_split([0, 0, 0, 0, 1, 1], 0.2, 0.2, 0, ["a", "b"])
    root = make_folder(tmp_path / "one", classes=1, per_class=5)
    with pytest.raises(DataError, match="1 class"):
        ImageFolderData(root).setup()
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderData(tmp_path / "missing").setup()


def test_csv_of_paths(tmp_path):
    root = make_folder(tmp_path / "d", classes=2, per_class=6)
    rows = ["file,kind"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    (tmp_path / "list.csv").write_text("\n".join(rows))
    data = CsvImageData(tmp_path / "list.csv", path_column="file", label_column="kind",
                        val_fraction=0.2, test_fraction=0.2).setup()
    assert data.classes_ == ["class0", "class1"] and sum(len(s) for s in data.splits_.values()) == 12
    with pytest.raises(DataError, match="no column 'path'"):
        CsvImageData(tmp_path / "list.csv").setup()
    (tmp_path / "bad.csv").write_text("path,label\nnope.png,a\n")
    with pytest.raises(DataError, match="bad.csv:2: image .*nope.png does not exist"):
        CsvImageData(tmp_path / "bad.csv").setup()


def test_shots_samples_per_class(image_folder):
    data = ImageFolderData(image_folder, val_fraction=0.2, test_fraction=0.2, shots=3).setup()
    assert np.bincount(data.splits_["train"].labels).tolist() == [3, 3, 3]


def test_split_folders_are_recognised_by_their_usual_names_only(tmp_path):
    d = make_folder(tmp_path / "a", classes=3, per_class=8)
    (d / "class2").rename(d / "train")  # a class called "train" beside other classes
    data = ImageFolderData(d).setup()
    assert data.classes_ == ["class0", "class1", "train"] and not data.presplit_
    s = make_folder(tmp_path / "b", classes=2, per_class=9, split=True)
    (s / "val").rename(s / "Validation")
    data = ImageFolderData(s).setup()
    assert data.presplit_ and len(data.splits_["val"]) == 6 and data.eval_split == "val"


def test_leakage_is_counted_warned_and_refused_on_request(tmp_path, caplog):
    import logging
    import shutil

    d = make_folder(tmp_path / "d", classes=2, per_class=9, split=True)
    shutil.copy(d / "train" / "class0" / "0.png", d / "val" / "class0" / "copy.png")  # byte-identical
    shutil.copy(d / "train" / "class0" / "1.png", d / "train" / "class1" / "also.png")  # two labels
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = ImageFolderData(d).setup()
    assert data.leakage_ == {"duplicates_across_splits": 1, "same_input_different_labels": 1}
    assert "possible leakage" in caplog.text and "copy.png" in caplog.text
    with pytest.raises(DataError, match="both in training and in val/test.*--on-leak warn"):
        ImageFolderData(d, on_leak="error").setup()
    clean = ImageFolderData(make_folder(tmp_path / "c", classes=2, per_class=9, split=True)).setup()
    assert clean.leakage_ == {"duplicates_across_splits": 0, "same_input_different_labels": 0}
