from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import transferkit as tk
from transferkit.errors import ConfigError, RunFolderError

from conftest import make_image, make_folder


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune", "partial:1", "scratch", "gradual", "lp-ft"])
def test_fit_writes_a_complete_run_folder(image_folder, run_kwargs, strategy):
    run = tk.fit(image_folder, strategy=strategy, val_fraction=0.25, test_fraction=0.25, **run_kwargs)
    names = {p.name for p in run.path.iterdir()}
    assert {"config.yaml", "labels.json", "model.json", "model.safetensors", "metrics.json",
            "predictions.csv", "train.log", "splits.json"} <= names
    assert "checkpoint.pt" not in names  # a finished run keeps no resume state
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["split"] == "test" and m["n"] == 9 and len(m["confusion_matrix"]) == 3
    assert sum(map(sum, m["confusion_matrix"])) == 9
    cfg = yaml.safe_load((run.path / "config.yaml").read_text())
    assert cfg["strategy"] == strategy and cfg["epochs"] == 2
    assert cfg["lr"] == 3e-3 and cfg["backbone_lr_mult"] == 0.1  # image defaults, resolved and saved
    if strategy != "linear-probe":
        assert (run.path / "history.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_linear_probe_learns_and_uses_feature_cache(tmp_path, run_kwargs):
    data = make_folder(tmp_path / "d", classes=3, per_class=30)
    run = tk.fit(data, strategy="linear-probe", **run_kwargs)
    assert run.accuracy >= 0.8  # bars at three orientations are easy even for random features
    cached = list((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(cached) == 2  # train and test features
    mtimes = {p: p.stat().st_mtime_ns for p in cached}
    run2 = tk.fit(data, strategy="linear-probe", **run_kwargs)
    assert {p: p.stat().st_mtime_ns for p in cached} == mtimes  # read, not recomputed
    assert run2.accuracy == run.accuracy


def test_predict_and_evaluate_reproduce_metrics(image_folder, run_kwargs):
    run = tk.fit(image_folder, strategy="finetune", **run_kwargs)
    again = tk.evaluate(run.path)
    assert again["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert again["confusion_matrix"] == run.metrics["confusion_matrix"]
    pred = tk.load(run.path)
    files = sorted(image_folder.rglob("*.png"))[:4]
    out = pred.predict([str(f) for f in files], topk=2)
    assert len(out) == 4 and all(o["label"] in pred.labels and len(o["topk"]) == 2 for o in out)
    probs = pred.predict_proba([str(f) for f in files])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    folder = pred.predict(str(image_folder / "class0"))
    assert len(folder) == 12
    whole = tk.evaluate(run.path, str(image_folder))
    assert whole["n"] == 36


def test_evaluate_rejects_unseen_labels(image_folder, run_kwargs, tmp_path):
    run = tk.fit(image_folder, strategy="linear-probe", **run_kwargs)
    other = make_folder(tmp_path / "other", classes=4, per_class=3)
    with pytest.raises(tk.TransferkitError, match="class3 .* not seen in training"):
        tk.evaluate(run.path, str(other))


def test_seed_makes_runs_repeatable(image_folder, run_kwargs, tmp_path):
    a = tk.fit(image_folder, strategy="finetune", **run_kwargs)
    b = tk.fit(image_folder, strategy="finetune", **run_kwargs)
    assert a.history[-1]["train_loss"] == pytest.approx(b.history[-1]["train_loss"], rel=1e-5)


def test_resume_continues_to_the_same_result(image_folder, run_kwargs):
    kw = dict(run_kwargs, epochs=3, name="interrupted", checkpoint_every=0)
    full = tk.fit(image_folder, strategy="finetune", **dict(kw, name="full"))

    class Stop(Exception):
        pass

    def stop_after_first(epoch, row):
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        tk.fit(image_folder, strategy="finetune", on_epoch_end=stop_after_first, **kw)
    path = full.path.parent / "interrupted"
    assert (path / "checkpoint.pt").is_file() and not (path / "metrics.json").exists()
    resumed = tk.fit(resume=path)
    assert resumed.metrics["accuracy"] == full.metrics["accuracy"]
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in full.history], rel=1e-5)
    with pytest.raises(RunFolderError, match="already finished"):
        tk.fit(resume=path)


def test_resume_uses_the_saved_split_whatever_happened_to_the_data(image_folder, run_kwargs):
    class Stop(Exception):
        pass

    def stop(epoch, row):
        raise Stop

    with pytest.raises(Stop):
        tk.fit(image_folder, strategy="finetune", name="r", on_epoch_end=stop, checkpoint_every=0, **run_kwargs)
    path = Path(run_kwargs["output"]) / "r"
    saved = json.loads((path / "splits.json").read_text())
    for i in range(5):  # new files would change a fresh split
        make_image(1, np.random.default_rng(i)).save(image_folder / "class1" / f"new{i}.png")
    resumed = tk.fit(resume=path)
    assert json.loads((path / "splits.json").read_text()) == saved
    assert resumed.metrics["n"] == len(saved["test"]["inputs"])
    with pytest.raises(Stop):
        tk.fit(image_folder, strategy="finetune", name="r2", on_epoch_end=stop, checkpoint_every=0, **run_kwargs)
    Path(saved["train"]["inputs"][0]).unlink()
    with pytest.raises(tk.TransferkitError, match="file.s. of the saved split are gone"):
        tk.fit(resume=Path(run_kwargs["output"]) / "r2")


def test_run_backbone_transfers_from_an_earlier_run(image_folder, run_kwargs, tmp_path):
    source = tk.fit(image_folder, strategy="finetune", **run_kwargs)
    target = make_folder(tmp_path / "target", classes=2, per_class=12, seed=3)
    run = tk.fit(target, **dict(run_kwargs, backbone=f"run:{source.path}"), strategy="finetune")
    assert run.metrics["n"] > 0
    b = tk.create_backbone(f"run:{source.path}")
    src_state = tk.load(source.path).model.backbone.state_dict()
    assert all(torch.equal(v, src_state[k]) for k, v in b.state_dict().items())
    assert b.source_head is not None  # the source run's classifier, for LEEP


def test_bad_settings_fail_before_a_run_folder_exists(image_folder, run_kwargs, tmp_path):
    with pytest.raises(ConfigError, match="Unknown key"):
        tk.fit(image_folder, **run_kwargs, epochz=3)
    with pytest.raises(ConfigError, match="augment='heavy'"):
        tk.fit(image_folder, **dict(run_kwargs, augment="heavy"))
    with pytest.raises(tk.TransferkitError):
        tk.fit(image_folder, **dict(run_kwargs, backbone="random:no_such_net"))
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_config_file_and_precedence(image_folder, run_kwargs, tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 1\nstrategy: finetune\nlr: 0.01\n")
    run = tk.fit(image_folder, config_file=tmp_path / "c.yaml", **dict(run_kwargs, epochs=None, lr=0.02))
    assert run.config.epochs == 1 and run.config.lr == 0.02 and run.config.strategy == "finetune"
    (tmp_path / "bad.yaml").write_text("epoch: 1\n")
    with pytest.raises(ConfigError, match="Unknown key.*epoch .*Expected one of: data, backbone"):
        tk.fit(image_folder, config_file=tmp_path / "bad.yaml", **run_kwargs)


def test_a_loss_that_becomes_nan_stops_the_run_clearly(image_folder, run_kwargs, monkeypatch):
    from transferkit.errors import TrainingError
    from transferkit.tasks.classification import Classification

    real = Classification.loss
    monkeypatch.setattr(Classification, "loss", lambda self, out, y: real(self, out, y) * float("nan"))
    with pytest.raises(TrainingError, match="training loss became nan in epoch 1.*Lower --lr"):
        tk.fit(image_folder, strategy="finetune", **run_kwargs)
    runs = Path(run_kwargs["output"])
    assert not runs.exists() or not any(runs.iterdir())  # nothing half-written is left


def test_run_files_respect_the_umask(image_folder, run_kwargs):
    import os

    old = os.umask(0o022)
    try:
        run = tk.fit(image_folder, strategy="linear-probe", **run_kwargs)
    finally:
        os.umask(old)
    for name in ("metrics.json", "model.safetensors", "report.html"):
        assert (run.path / name).stat().st_mode & 0o777 == 0o644, name  # readable by others, as any file


def test_checkpoints_are_written_once_their_interval_of_training_has_passed(tmp_path, monkeypatch):
    """A killed run repeats at most --checkpoint-every seconds of training; short runs write nothing."""
    import transferkit.training._callbacks as cb

    clock = [100.0]
    monkeypatch.setattr(cb.time, "monotonic", lambda: clock[0])
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck = cb.Checkpoint(tmp_path, interval=60.0)
    written = []
    for epoch, elapsed in enumerate([20, 20, 30, 10, 65], start=1):
        clock[0] += elapsed
        (tmp_path / cb.CHECKPOINT).unlink(missing_ok=True)
        ck.save(epoch, model, opt, sched, [])
        if (tmp_path / cb.CHECKPOINT).exists():
            written.append(epoch)
    assert written == [3, 5]  # 70 s after the start, then 75 s after that write
    every = cb.Checkpoint(tmp_path, interval=0)
    (tmp_path / cb.CHECKPOINT).unlink()
    every.save(1, model, opt, sched, [])
    assert torch.load(tmp_path / cb.CHECKPOINT, weights_only=True)["epoch"] == 1
