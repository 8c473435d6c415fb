"""Object detection: every annotation layout reads the same boxes, augmentation keeps boxes valid, the metrics are
COCO's, and a run trains, predicts, evaluates, draws and serves on synthetic scenes with a tiny backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import BOX_CLASSES, DETECT, box_scenes, make_boxes, shared_path
from transferkit.tasks.detection._data import DetectionData, DetPresize, box_ops
from transferkit.tasks.detection._metrics import detection_metrics, jackknife, mean_ap


def _boxes(data: DetectionData) -> dict[str, list]:
    """Image file name → sorted (label, rounded box) of every record."""
    return {p.rsplit("/", 1)[-1]: sorted((lab, tuple(round(v) for v in b)) for lab, b in zip(r["labels"], r["boxes"]))
            for p, r in data.records_.items()}


@pytest.mark.parametrize("fmt", ["coco", "yolo", "csv"])
def test_every_layout_reads_the_same_boxes(tmp_path, fmt):
    voc = DetectionData(make_boxes(tmp_path / "voc", "voc"), val_fraction=0.2, test_fraction=0.2).setup()
    other = DetectionData(make_boxes(tmp_path / fmt, fmt), val_fraction=0.2, test_fraction=0.2).setup()
    assert voc.classes_ == other.classes_ == sorted(BOX_CLASSES)
    assert _boxes(other) == _boxes(voc)
    truth = {f"scene{i}.png": sorted((c, (a, b, e, f)) for c, a, b, e, f in objs) for i, (_, objs) in enumerate(box_scenes())}
    assert _boxes(voc) == truth


def test_split_folders_and_val_carved_from_train(tmp_path):
    for split, seed in (("train", 0), ("test", 1)):
        make_boxes(tmp_path / "data" / split, "voc", n=10, seed=seed)
    data = DetectionData(tmp_path / "data", val_fraction=0.2, seed=3).setup()
    sizes = {k: len(v) for k, v in data.splits_.items()}
    assert sizes == {"train": 8, "val": 2, "test": 10}
    assert not set(data.splits_["val"].inputs) & set(data.splits_["train"].inputs)
    assert all("/train/" in p for p in data.splits_["val"].inputs)  # val comes out of train, never out of test


def test_voc_imagesets_split_and_difficult_boxes(tmp_path):
    root = make_boxes(tmp_path / "voc", "voc", n=6)
    xml = root / "Annotations" / "scene0.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("scene0\nscene1\nscene2\nscene3\n")
    (sets / "test.txt").write_text("scene4\nscene5\n")
    data = DetectionData(root, val_fraction=0.0).setup()
    assert [p.rsplit("/", 1)[-1] for p in data.splits_["test"].inputs] == ["scene4.png", "scene5.png"]
    rec = data.records_[str(root / "JPEGImages" / "scene0.png")]
    assert rec["ignore"][0] is True and not any(rec["ignore"][1:])


def test_training_targets_leave_ignored_boxes_out(tmp_path):
    from transferkit.data import Items
    from transferkit.tasks.detection._data import DetectionDataset, DetTransform

    rec = {"path": "x.png", "width": 80, "height": 60, "boxes": [[0, 0, 40, 30], [40, 30, 80, 60]],
           "labels": ["square", "disc"], "ignore": [True, False]}
    img = box_scenes(1)[0][0]
    img.save(tmp_path / "x.png")
    rec["path"] = str(tmp_path / "x.png")
    items = Items([rec["path"]], [0])
    presize = DetPresize(120, 400)
    (x_tr, t_tr), _ = DetectionDataset(items, {rec["path"]: rec}, DetTransform(presize, None, train=True), ["disc", "square"], True)[0]
    (x_ev, t_ev), _ = DetectionDataset(items, {rec["path"]: rec}, DetTransform(presize), ["disc", "square"], False)[0]
    assert x_tr.shape == (3, 120, 160)
    assert t_tr["labels"].tolist() == [1] and torch.allclose(t_tr["boxes"], torch.tensor([[80.0, 60, 160, 120]]))
    assert t_ev["labels"].tolist() == [2, 1] and t_ev["ignore"].tolist() == [True, False]  # scored in original pixels
    assert torch.equal(t_ev["boxes"], torch.tensor(rec["boxes"], dtype=torch.float32))


@pytest.mark.parametrize("preset,seed", [(p, s) for p in ("light", "standard") for s in range(4)])
def test_augmentation_keeps_boxes_valid_and_on_their_objects(preset, seed):
    from torchvision import tv_tensors

    torch.manual_seed(seed)
    img, objs = box_scenes(1, seed=seed, size=(120, 90))[0]
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    boxes = tv_tensors.BoundingBoxes([o[1:] for o in objs], format="XYXY", canvas_size=(90, 120))
    labels = torch.tensor([BOX_CLASSES.index(o[0]) + 1 for o in objs])
    out_img, out = box_ops(preset)(tv_tensors.Image(x), {"boxes": boxes, "labels": labels})
    h, w = out_img.shape[1:]
    b = out["boxes"]
    assert len(b) == len(out["labels"]) and len(b) >= 1
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    for (x1, y1, x2, y2), lab in zip(b.round().int().tolist(), out["labels"].tolist()):
        centre = out_img[:, (y1 + y2) // 2, (x1 + x2) // 2].tolist()  # the object moved with its box
        background = out_img.max(0).values.float().median().item()  # most of a scene is dark noise
        assert max(centre) > background + 25, (centre, background)  # an object, not the background
        if preset == "light":  # colours untouched: a square is red, a disc cyan
            assert (centre[0] > centre[2]) == (lab == 1), (centre, lab)


def test_metrics_are_cocos_and_count_outcomes():
    gts = [{"boxes": [[10, 10, 50, 50], [60, 60, 90, 90]], "labels": [1, 2], "ignore": [False, False]},
           {"boxes": [[0, 0, 30, 30]], "labels": [1], "ignore": [True]}]
    perfect = [{"boxes": g["boxes"], "scores": [0.9] * len(g["labels"]), "labels": g["labels"]} for g in gts]
    m = detection_metrics(perfect, gts, ["a", "b"], 0.5)
    assert m["map"] == pytest.approx(1.0) and m["map_50"] == pytest.approx(1.0)
    assert m["counts"] == {"tp": 2, "fp": 0, "missed": 0, "ignored": 1} and m["ignored_objects"] == 1
    shifted = [{"boxes": [[20, 20, 60, 60], [60, 60, 90, 90], [100, 100, 120, 120]], "scores": [0.8, 0.9, 0.7],
                "labels": [1, 2, 1]}, {"boxes": [], "scores": [], "labels": []}]
    m2 = detection_metrics(shifted, gts, ["a", "b"], 0.5)
    assert m2["counts"] == {"tp": 1, "fp": 2, "missed": 1, "ignored": 0}  # IoU of the shifted box is 0.39
    assert m2["per_class"]["b"]["ap"] == pytest.approx(1.0) and m2["per_class"]["a"]["ap"] == pytest.approx(0.0)
    assert m2["map"] == pytest.approx(0.5)
    pseudo = jackknife(perfect * 2, gts * 2)
    assert np.allclose(pseudo["map"], 1.0)
    assert mean_ap(shifted, gts)["map_50"] < 1.0


def test_detect_run_predict_evaluate_draw_and_serve(tmp_path):
    import transferkit as tk
    from transferkit.predict import evaluate

    data = make_boxes(tmp_path / "data", "voc", n=24)
    run = tk.fit(data, strategy="finetune", output=str(tmp_path / "runs"), **dict(DETECT, epochs=4))
    m = run.metrics
    assert m["task"] == "detect" and m["split"] == "test" and m["selection"] == "best val epoch"
    assert 0.3 < m["map_50"] <= 1.0 and set(m["per_class"]) == set(BOX_CLASSES)
    assert evaluate(run.path)["map"] == pytest.approx(m["map"], abs=1e-6)  # the saved split, scored again
    for f in ("report.html", "detections.jsonl", "predictions.csv", "history.csv"):
        assert (run.path / f).is_file()
    assert "val_map" in (run.path / "history.csv").read_text()
    image = data / "JPEGImages" / "scene3.png"
    pred = tk.load(run.path, score_threshold=0.05).predict([str(image)])[0]
    assert pred["boxes"], "a trained detector finds something at score 0.05"
    for b in pred["boxes"]:  # original pixels of the 80×60 image
        x1, y1, x2, y2 = b["box"]
        assert 0 <= x1 < x2 <= 80 and 0 <= y1 < y2 <= 60 and b["label"] in BOX_CLASSES
    drawn = tk.load(run.path, score_threshold=0.05).task.draw([dict(pred, input=str(image))], tmp_path / "drawn")
    assert len(drawn) == 1 and drawn[0].stat().st_size > 0
    # drawn into the photos' own folder: never over a photo, one file per input even for two inputs of one stem
    from PIL import Image

    from transferkit.errors import ConfigError

    photos = [tmp_path / "a" / "scene3.jpg", tmp_path / "b" / "scene3.jpg"]
    for ph in photos:
        ph.parent.mkdir()
        Image.open(image).convert("RGB").save(ph)
    before = [ph.read_bytes() for ph in photos]
    task = tk.load(run.path, score_threshold=0.05).task
    drawn = task.draw([dict(pred, input=str(ph)) for ph in photos], photos[0].parent)
    assert [ph.read_bytes() for ph in photos] == before
    assert sorted(d.name for d in drawn) == ["scene3_boxes-1.jpg", "scene3_boxes.jpg"]
    assert all(d.parent == photos[0].parent and d.is_file() for d in drawn)
    with pytest.raises(ConfigError, match="is a file"):
        task.draw([dict(pred, input=str(photos[0]))], photos[1])

    from transferkit.export import export

    res = export(run.path, "onnx")  # the whole detector, NMS included; parity on the run's test images
    assert res["parity"]["n"] >= 1 and res["parity"]["same_detections"] == 1.0
    assert res["parity"]["max_box_diff_px"] < 0.01 and res["parity"]["max_score_diff"] < 1e-3

    from fastapi.testclient import TestClient

    from transferkit.serve import create_app

    with TestClient(create_app(run.path)) as client:
        served = client.post("/predict", files={"file": ("s.png", image.read_bytes(), "image/png")}).json()
    local = tk.load(run.path).predict([str(image)])[0]
    assert [b["label"] for b in served["boxes"]] == [b["label"] for b in local["boxes"]]
    assert np.allclose([b["box"] for b in served["boxes"]], [b["box"] for b in local["boxes"]], atol=0.5)


def test_detect_resume_keeps_the_saved_boxes(tmp_path):
    import transferkit as tk

    data = make_boxes(tmp_path / "data", "coco", n=12)

    def stop(epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tk.fit(data, strategy="frozen", output=str(tmp_path / "runs"), name="r", on_epoch_end=stop, checkpoint_every=0, **DETECT)
    saved = json.loads((tmp_path / "runs" / "r" / "splits.json").read_text())
    assert sum(len(r["boxes"]) for part in saved.values() for r in part["records"]) > 0
    (data.parent / "annotations.json").unlink()  # resuming reads the saved split, not the annotations
    run = tk.fit(resume=tmp_path / "runs" / "r")
    assert len(run.history) == DETECT["epochs"] and "map" in run.metrics


@pytest.mark.slow
def test_raccoon_layouts_agree_and_packaged_lite0_detects_losses():
    root = shared_path("data", "raccoon")
    voc = DetectionData(root, val_fraction=0.0, test_fraction=0.2).setup()
    coco = DetectionData(root / "annotations_coco.json", val_fraction=0.0, test_fraction=0.2).setup()
    assert len(voc.records_) == len(coco.records_) == 200 and voc.classes_ == ["raccoon"]
    assert sum(len(r["boxes"]) for r in voc.records_.values()) == 217
    for path, r in voc.records_.items():  # COCO's x = xmin - 1 (the README's conversion): one pixel apart at most
        assert np.abs(np.asarray(r["boxes"]) - np.asarray(coco.records_[path]["boxes"])).max() <= 1.0
    import transferkit as tk
    from transferkit.tasks import get_task

    task = get_task("detect").for_run(tk.RunConfig(task="detect"), voc)
    model = task.build_model(tk.create_backbone("packaged:efficientnet_lite0"), {"labels": voc.classes_})
    items = voc.splits_["train"].subset(np.arange(2))
    _, eval_tf, dc = task.pipeline(model.backbone, tk.RunConfig(task="detect"))
    train_tf = type(eval_tf)(eval_tf.presize, None, train=True)
    ds = task.dataset(model.backbone, items, train_tf)
    x, _ = ds.collate_fn([ds[0], ds[1]])
    losses = model.train()(x)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_torchvision_detector_transfers_whole_from_a_local_checkpoint(tmp_path):
    """file:<checkpoint> --arch tv:<name>: trunk, FPN, RPN and RoI heads come from the checkpoint; only the box
    predictor is new (sized for the user's classes)."""
    from torchvision.models import detection

    import transferkit as tk
    from transferkit.tasks import get_task

    torch.manual_seed(0)
    source = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    backbone = tk.create_backbone(f"file:{tmp_path / 'tv.pth'}", arch="tv:fasterrcnn_mobilenet_v3_large_320_fpn")
    model = get_task("detect")().build_model(backbone, {"labels": ["a", "b", "c"]})
    ours = model.state_dict()
    for key, value in source.state_dict().items():
        mapped = (key.replace("backbone.body.", "backbone.model.").replace("backbone.fpn.", "head.fpn.")
                  .replace("rpn.", "head.rpn.", 1).replace("roi_heads.", "head.roi_heads.", 1))
        if "box_predictor" in key:
            assert ours[mapped].shape[0] in (4, 16)  # 3 classes + background; 4 boxes each
        else:
            assert torch.equal(ours[mapped], value), key
    assert backbone.stages()[0][0].startswith("model.") and len(backbone.stages()) > 3  # partial:K has stages


def test_torchvision_detector_offline_is_a_clear_error(monkeypatch):
    import urllib.error

    import torch.hub

    from transferkit.errors import BackboneError
    import transferkit as tk

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneError, match="packaged:efficientnet_lite0") as err:
        tk.create_backbone("tv:fasterrcnn_mobilenet_v3_large_fpn")
    assert "file:" in str(err.value)
    with pytest.raises(BackboneError, match="fasterrcnn_resnet50_fpn"):
        tk.create_backbone("tv:fasterrcnn_resnet50")


def test_backbone_of_a_classification_run_becomes_the_detector_trunk(tmp_path):
    """run:<classification run>: the source task's backbone, weights and all, under the new FPN and heads."""
    import transferkit as tk
    from conftest import FAST, make_folder
    from transferkit.tasks import get_task

    source = tk.fit(make_folder(tmp_path / "cls", classes=2, per_class=8), strategy="finetune",
                    output=str(tmp_path / "runs"), **FAST)
    backbone = tk.create_backbone(f"run:{source.path}")
    trained = tk.load(source.path).model.backbone.state_dict()
    model = get_task("detect")().build_model(backbone, {"labels": ["a"]})
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in trained.items())
    x = {"images": torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "sizes": torch.tensor([[64, 64]]),
         "orig_sizes": torch.tensor([[64, 64]]), "boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([1]),
         "ignore": torch.tensor([False]), "counts": torch.tensor([1])}
    losses = model.train()(x)
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_coco_numbers_as_strings_read_as_numbers(tmp_path):
    path = make_boxes(tmp_path / "coco", "coco", n=8)
    ref = DetectionData(path, val_fraction=0.0, test_fraction=0.0).setup()
    doc = json.loads(path.read_text())
    for a in doc["annotations"]:
        a["iscrowd"], a["bbox"] = "0", [str(v) for v in a["bbox"]]
    path.write_text(json.dumps(doc))
    got = DetectionData(path, val_fraction=0.0, test_fraction=0.0).setup()
    assert _boxes(got) == _boxes(ref)
    assert not any(i for r in got.records_.values() for i in r["ignore"])  # "0" is not a crowd box


def test_yolo_names_map_with_string_keys_and_gaps(tmp_path):
    path = make_boxes(tmp_path / "yolo", "yolo", n=8)
    ref = _boxes(DetectionData(path, val_fraction=0.0, test_fraction=0.0).setup())
    path.write_text("path: .\ntrain: images\nnames: {'0': square, '10': disc}\n")
    for f in (path.parent / "labels").iterdir():
        f.write_text("".join(("10" + ln[1:] if ln.startswith("1 ") else ln) + "\n" for ln in f.read_text().splitlines()))
    assert _boxes(DetectionData(path, val_fraction=0.0, test_fraction=0.0).setup()) == ref


def test_voc_trainval_less_val_and_unlisted_images(tmp_path):
    root = make_boxes(tmp_path / "voc", "voc", n=8)
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "trainval.txt").write_text("scene0\nscene1\nscene2\nscene3\nscene4\nscene5\n")
    (sets / "val.txt").write_text("scene4\nscene5\n")
    data = DetectionData(root).setup()
    names = {k: sorted(p.rsplit("/", 1)[-1] for p in v.inputs) for k, v in data.splits_.items()}
    assert names["val"] == ["scene4.png", "scene5.png"] and "scene4.png" not in names["train"]
    assert len(names["train"]) == 4
    assert {p.rsplit("/", 1)[-1] for p, _ in data.bad_files_} == {"scene6.png", "scene7.png"}


def test_exif_rotated_photo_boxes_land_on_the_object(tmp_path):
    """A photo stored a quarter turn rotated with EXIF orientation 6: the decoder shows it upright and its boxes
    (drawn upright) cover the object's pixels."""
    from PIL import Image

    from transferkit.data import load_rgb

    root = make_boxes(tmp_path / "voc", "voc", n=6)
    p = root / "JPEGImages" / "scene0.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(p).transpose(Image.Transpose.ROTATE_90).save(p.with_suffix(".jpg"), exif=exif, quality=95)
    p.unlink()
    data = DetectionData(root, val_fraction=0.0, test_fraction=0.0).setup()
    rec = data.records_[str(p.with_suffix(".jpg"))]
    assert (rec["width"], rec["height"]) == (80, 60) and rec["boxes"]
    img = np.asarray(load_rgb(p.with_suffix(".jpg")), dtype=float)
    x1, y1, x2, y2 = (int(v) for v in rec["boxes"][0])
    inside = img[y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean()
    assert inside > 100  # the bright object, not the dark noise around it
