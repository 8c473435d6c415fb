"""Semantic segmentation: every mask layout reads the same class indices, bad masks are listed with their reason,
mIoU comes from the pooled confusion matrix, augmentation moves masks with the pixels, and a run trains, predicts,
evaluates, exports and serves on synthetic scenes with a tiny backbone."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SEG_CLASSES, SEGMENT, make_masks, seg_scenes, shared_path
from transferkit.tasks.segmentation._data import SegmentationData, seg_ops
from transferkit.tasks.segmentation._masks import load_mask
from transferkit.tasks.segmentation._metrics import confusion, jackknife, scores, segmentation_metrics


def _masks(data: SegmentationData) -> dict[str, np.ndarray]:
    """Image file name → its mask as read."""
    return {p.rsplit("/", 1)[-1]: load_mask(r, data.spec_) for p, r in data.records_.items()}


@pytest.mark.parametrize("fmt", ["rgb", "voc", "csv", "coco"])
def test_every_layout_reads_the_same_masks(tmp_path, fmt):
    ref = SegmentationData(make_masks(tmp_path / "folders", "folders")).setup()
    other = SegmentationData(make_masks(tmp_path / fmt, fmt)).setup()
    truth = {f"scene{i}.png": m for i, (_, m) in enumerate(seg_scenes())}
    assert ref.classes_ == list(SEG_CLASSES)
    got = _masks(other)
    assert set(got) == set(truth)
    if fmt == "coco":  # polygons are the rectangles around each class: exact for squares, covering discs
        for name, m in truth.items():  # rasterised polygons: the squares' pixels, give or take their border
            inter = ((got[name] == 1) & (m == 1)).sum()
            assert inter / max(((got[name] == 1) | (m == 1)).sum(), 1) > 0.8 or not (m == 1).any()
            assert ((m == 2) & (got[name] == 2)).sum() >= 0.8 * (m == 2).sum()
        assert other.classes_ == list(SEG_CLASSES)
        return
    for name, m in truth.items():
        assert (got[name] == m).all(), name
    assert other.classes_[:3] == (["background", "aeroplane", "bicycle"] if fmt == "voc" else list(SEG_CLASSES))
    if fmt == "voc":  # ImageSets/Segmentation gives the split
        assert (len(other.splits_["train"]), len(other.splits_["val"])) == (8, 4)


def test_binary_masks_and_split_folders(tmp_path, caplog):
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        root = make_masks(tmp_path / "d" / split, "folders", n=6, seed=seed)
        (root / "classes.txt").unlink()
        for p in (root / "masks").iterdir():
            m = np.asarray(Image.open(p))
            Image.fromarray(np.where(m > 0, 255, 0).astype(np.uint8)).save(p)
    with caplog.at_level(logging.INFO, logger="transferkit"):
        data = SegmentationData(tmp_path / "d", val_fraction=0.0).setup()
    assert data.classes_ == ["background", "foreground"]
    assert {k: len(v) for k, v in data.splits_.items()} == {"train": 6, "val": 6, "test": 6}
    assert "0 and 255 only" in caplog.text
    m = _masks(data)["scene0.png"]
    assert set(np.unique(m)) == {0, 1}


def test_bad_masks_are_listed_with_their_reason(tmp_path, caplog):
    root = make_masks(tmp_path / "d", "folders", n=12)
    masks = root / "masks"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "scene0.png")                  # wrong size
    Image.fromarray(np.full((60, 80), 7, np.uint8)).save(masks / "scene1.png")                # outside the table
    Image.fromarray(np.full((60, 80, 3), (10, 200, 30), np.uint8)).save(masks / "scene2.png")  # RGB, no colours
    (masks / "scene3.png").unlink()                                                              # image without mask
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(masks / "orphan.png")                   # mask without image
    Image.fromarray(np.full((60, 80), 255, np.uint8)).save(masks / "scene4.png")              # all ignore
    Image.fromarray(np.asarray(Image.open(masks / "scene5.png")).astype(np.uint16)).save(masks / "scene5.png")
    data = SegmentationData(root, val_fraction=0.2, test_fraction=0.0).setup()
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in data.bad_files_}
    assert "10×10 but its image is 80×60" in reasons["scene0.png"]
    assert "value(s) 7 outside the 3 classes" in reasons["scene1.png"]
    assert "RGB colour mask and no colour table" in reasons["scene2.png"]
    assert "no mask named scene3" in reasons["scene3.png"]
    assert "without an image" in reasons["orphan.png"]
    assert "every pixel is 255" in reasons["scene4.png"]
    kept = {p.rsplit("/", 1)[-1] for p in data.records_}
    assert kept == {f"scene{i}.png" for i in range(5, 12)}  # the 16-bit mask holds valid indices: kept
    assert (load_mask(data.records_[str(root / "images" / "scene5.png")], data.spec_) == seg_scenes()[5][1]).all()


def test_jpeg_masks_are_snapped_and_warned(tmp_path, caplog):
    root = make_masks(tmp_path / "d", "folders", n=8)
    for p in sorted((root / "masks").iterdir()):
        Image.open(p).convert("L").point(lambda v: v * 100).save(p.with_suffix(".jpg"), quality=70)
        p.unlink()
    (root / "classes.txt").write_text("a\nb\nc\n")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = SegmentationData(root).setup()
    assert "JPEG" in caplog.text and "snapped" in caplog.text
    # values 0/100/200 smeared by JPEG: nearest valid value → never a class outside the table
    m = _masks(data)["scene0.png"]
    assert set(np.unique(m)) <= {0, 1, 2, 255}


def test_miou_pools_pixels_and_leaves_ignore_out():
    truth = [np.array([[0, 0, 1, 255]]), np.array([[1, 1, 1, 1]])]
    pred = [np.array([[0, 1, 1, 1]]), np.array([[1, 1, 1, 0]])]
    cms = [confusion(p, t, 2) for p, t in zip(pred, truth)]
    m = segmentation_metrics(cms, ["a", "b"])
    # pooled: class a tp 1, fp 1, fn 1 → 1/3; class b tp 4, fp 1, fn 1 → 4/6
    assert m["per_class"]["a"]["iou"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["miou"] == pytest.approx((1 / 3 + 4 / 6) / 2)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)  # the ignored pixel is not scored
    assert m["pixels"] == 7
    per_image = np.mean([scores(c)["miou"] for c in cms])
    assert per_image != pytest.approx(m["miou"])  # not the mean of per-image IoUs
    pv = jackknife(cms, ("miou",))["miou"]
    assert len(pv) == 2 and np.isfinite(pv).all()


def test_augmentation_moves_masks_with_pixels():
    ops = seg_ops("standard", 32)
    from torchvision import tv_tensors

    img = torch.zeros(3, 48, 48, dtype=torch.uint8)
    img[:, :, :24] = 200  # left half bright
    mask = torch.zeros(48, 48, dtype=torch.uint8)
    mask[:, :24] = 2
    mask[0, 0] = 255
    torch.manual_seed(0)
    for _ in range(10):
        i, m = ops(tv_tensors.Image(img), tv_tensors.Mask(mask))
        assert i.shape[-2:] == m.shape[-2:] == (32, 32)
        assert set(torch.unique(m).tolist()) <= {0, 2, 255}  # nearest neighbour: no blended class values
        bright = i.float().mean(0) > 100
        assert ((m == 2) == bright)[:, 2:-2].float().mean() > 0.9  # the mask moved with the pixels


def test_segment_run_end_to_end(tmp_path):
    import transferkit as tk
    from transferkit.export import export

    root = make_masks(tmp_path / "d", "folders", n=16)
    run = tk.fit(str(root), output=str(tmp_path / "runs"), **SEGMENT)
    m = run.metrics
    assert m["task"] == "segment" and set(m["per_class"]) == set(SEG_CLASSES)
    assert 0 <= m["miou"] <= 1 and m["n"] == len(run.config and json.loads((run.path / "splits.json").read_text())["test"]["inputs"])
    assert (run.path / "masks").is_dir() and (run.path / "confusions.npz").is_file()
    report = (run.path / "report.html").read_text()
    assert "Per-class IoU" in report and "Worst test images" in report and "<img" in report.split("Worst")[1]
    # predict: fractions sum to 1, the mask has the image's size, --out writes masks and never over an input
    pred = tk.load(run.path)
    img = root / "images" / "scene0.png"
    p = pred.predict([str(img)])[0]
    assert sum(p["fractions"].values()) == pytest.approx(1, abs=1e-3) and p["size"] == [60, 80]
    written = pred.task.write(pred.predict([str(img), str(img)]), root / "images", overlays=True)
    assert len(written) == 4 and len(set(written)) == 4 and img.is_file()
    assert np.asarray(Image.open(written[0])).shape == (60, 80)
    truth = root / "gt"  # a folder holding the user's own masks, named as predict names its outputs
    truth.mkdir()
    (truth / "scene0_mask.png").write_bytes(b"the user's ground truth")
    again = pred.task.write(pred.predict([str(img)]), truth)
    assert (truth / "scene0_mask.png").read_bytes() == b"the user's ground truth"
    assert [p.name for p in again] == ["scene0_mask-1.png"]
    # evaluate on the saved split gives the run's own numbers
    assert tk.evaluate(run.path)["miou"] == pytest.approx(m["miou"], abs=1e-6)
    # ONNX: any image size
    out = export(run.path, "onnx")
    assert out["parity"]["equal_pixels"] > 0.999
    import onnxruntime as ort

    sess = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    assert sess.run(None, {"image": np.random.rand(1, 3, 45, 71).astype(np.float32) * 255})[0].shape == (1, 3, 45, 71)


def test_segment_resume_and_serve(tmp_path):
    import transferkit as tk

    root = make_masks(tmp_path / "d", "folders", n=12)

    class Stop(Exception):
        pass

    def stop(epoch, row):
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        tk.fit(str(root), output=str(tmp_path / "runs"), name="r", checkpoint_every=0, on_epoch_end=stop, **SEGMENT)
    run = tk.fit(resume=tmp_path / "runs" / "r")
    assert run.metrics["kept_epoch"] == 2

    from fastapi.testclient import TestClient

    from transferkit.serve import create_app

    with TestClient(create_app(run.path)) as client:
        with open(root / "images" / "scene1.png", "rb") as fh:
            r = client.post("/predict", files={"file": ("x.png", fh, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["fractions"]) == set(SEG_CLASSES) and body["size"] == [60, 80] and body["mask_png"]


@pytest.mark.slow
def test_shared_aerial_set_reads_as_given():
    root = shared_path("data", "dubai_aerial_seg")
    data = SegmentationData(root).setup()
    assert data.classes_ == ["building", "land", "road", "vegetation", "water"]
    assert {k: len(v) for k, v in data.splits_.items()} == {"train": 210, "val": 60, "test": 0}
    assert not data.bad_files_


def test_pretrained_batchnorm_keeps_its_statistics_and_the_decoders_learns():
    """--bn auto on a pretrained backbone: its BatchNorm layers normalise with their running statistics while the
    new decoder's BatchNorm layers use (and learn) batch statistics."""
    from transferkit.backbones import create_backbone
    from transferkit.config import resolve_config
    from transferkit.strategies import get_strategy
    from transferkit.tasks.segmentation._model import Segmenter

    model = Segmenter(create_backbone("random:test_efficientnet"), 3)
    strategy = get_strategy(resolve_config({"strategy": "finetune"}))
    strategy.prepare(model)
    strategy.train_mode(model)
    bns = lambda m: [x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]  # noqa: E731
    assert bns(model.backbone) and not any(b.training for b in bns(model.backbone))
    assert bns(model.head) and all(b.training for b in bns(model.head))


def test_an_undecodable_image_stays_listed_beside_the_mask_problems(tmp_path):
    root = make_masks(tmp_path / "d", "folders", n=10)
    (root / "images" / "scene0.png").write_bytes(b"not an image")
    (root / "masks" / "scene1.png").unlink()
    data = SegmentationData(root).setup()
    listed = {p.rsplit("/", 1)[-1] for p, _ in data.bad_files_}
    assert {"scene0.png", "scene1.png"} <= listed


def _rewrite(root, fn, suffix=None):
    for p in sorted((root / "masks").iterdir()):
        a = fn(np.asarray(Image.open(p)), p)
        out = p.with_suffix(suffix) if suffix else p
        Image.fromarray(a).save(out, **({"quality": 90} if suffix == ".jpg" else {}))
        if out != p:
            p.unlink()


def test_one_mask_policy_decided_from_the_whole_set(tmp_path, caplog):
    """Each kind of mask is read as what it is, judged from every file's values together (truth: seg_scenes)."""
    from PIL import ImageFilter

    truth = {f"scene{i}.png": m for i, (_, m) in enumerate(seg_scenes(12))}

    def read(name, fn, suffix=None, table=False):
        root = make_masks(tmp_path / name, "folders", n=12)
        if not table:
            (root / "classes.txt").unlink()
        _rewrite(root, fn, suffix)
        data = SegmentationData(root).setup()
        return data, _masks(data)

    # anti-aliased 0/255: foreground kept (it was read as ignore), edges thresholded
    data, got = read("aa", lambda a, p: np.asarray(Image.fromarray(np.where(a > 0, 255, 0).astype(np.uint8))
                                                   .filter(ImageFilter.GaussianBlur(0.8))))
    assert data.classes_ == ["background", "foreground"]
    agree = np.mean([(got[k] == (truth[k] > 0)).mean() for k in got])
    assert agree > 0.97 and all(set(np.unique(m)) <= {0, 1} for m in got.values())
    # JPEG index masks 0/1/2 without a table: three classes (they were read as binary: all background)
    data, got = read("jpg", lambda a, p: a.astype(np.uint8), ".jpg")
    assert data.classes_ == ["0", "1", "2"]
    assert np.mean([(got[k] == truth[k]).mean() for k in got]) > 0.97
    # 16-bit ids 0, 1, 300: three classes in order (300 wrapped to 44 as uint8)
    data, got = read("ids", lambda a, p: np.where(a == 2, 300, a.astype(np.uint16)).astype(np.uint16))
    assert data.classes_ == ["0", "1", "300"]
    assert all((got[k] == truth[k]).all() for k in got)
    # one stray pixel of 3000: not 3001 classes; that pixel is ignored, and named
    def stray(a, p):
        a = a.astype(np.uint16).copy()
        if p.stem == "scene3":
            a[0, 0] = 3000
        return a
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data, got = read("stray", stray)
    assert data.classes_ == ["0", "1", "2"] and got["scene3.png"][0, 0] == 255
    assert "scene3.png (3000: 1 px)" in caplog.text


def test_class_table_comments_and_exif_stored_frame(tmp_path):
    root = make_masks(tmp_path / "d", "folders", n=12)
    (root / "classes.txt").write_text("# one name per index\nbackground\nsquare\n\ndisc\n")
    img, mask = Image.open(root / "images" / "scene0.png"), Image.open(root / "masks" / "scene0.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 270°: stored frame is the upright picture turned back
    (root / "images" / "scene0.png").unlink()
    img.rotate(90, expand=True).save(root / "images" / "scene0.png", exif=exif.tobytes())
    mask.rotate(90, expand=True).save(root / "masks" / "scene0.png")
    data = SegmentationData(root).setup()
    assert data.classes_ == list(SEG_CLASSES)
    got = _masks(data)["scene0.png"]
    assert (got == np.asarray(mask)).all()  # turned with its photo, upright like it
