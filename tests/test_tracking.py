"""Experiment trackers through accelerate's: TensorBoard event files with every epoch's row, the config and the
final metrics; a comparison's runs side by side; a tracker that is not installed is one line and the run goes on."""

from __future__ import annotations

import logging

import pytest

import transferkit as tk
from transferkit.errors import ConfigError

from conftest import FAST, make_folder

pytest.importorskip("tensorboard")


def _scalars(folder) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_every_epoch_and_the_final_metrics(tmp_path):
    data = make_folder(tmp_path / "d", classes=2, per_class=10)
    run = tk.fit(data, strategy="finetune", track="tensorboard", output=str(tmp_path / "runs"),
                 **dict(FAST, epochs=3))
    events = list((run.path / "tensorboard").rglob("events.out.tfevents*"))
    assert events
    scalars = _scalars(events[0].parent)
    assert len(scalars["train_loss"]) == 3 and len(scalars["val_acc"]) == 3
    assert scalars["final.accuracy"] == [pytest.approx(run.metrics["accuracy"])]


def test_compare_runs_side_by_side_and_missing_trackers_are_one_line(tmp_path, caplog):
    from transferkit.compare import compare

    data = make_folder(tmp_path / "d", classes=2, per_class=10)
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        compare(str(data), ["scratch", "finetune"], seeds=1, output=str(tmp_path / "cmp"), name="c",
                track="tensorboard,wandb", **dict(FAST, epochs=1))
    runs = sorted(p.name for p in (tmp_path / "cmp" / "c" / "tensorboard").iterdir())
    assert runs == ["finetune-seed0", "scratch-seed0"]
    said = [r.getMessage() for r in caplog.records if "wandb" in r.getMessage()]
    assert said and all("the run goes on" in m for m in said) and len(said) == 2  # once per run


def test_unknown_tracker_is_refused():
    data = "unused"
    with pytest.raises(ConfigError, match="Unknown --track"):
        from transferkit.config import resolve_config
        from transferkit.training._tracking import Tracking

        Tracking(resolve_config({"data": data, "track": "tensorbored"}), ".")


def test_mlflow_local_store_groups_a_comparison(tmp_path, monkeypatch):
    """MLflow where installed: a local store beside the comparison, the comparison as the experiment, each run's
    epochs, final metrics and files."""
    mlflow = pytest.importorskip("mlflow")
    from transferkit.compare import compare

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = make_folder(tmp_path / "d", classes=2, per_class=10)
    compare(str(data), ["scratch", "finetune"], seeds=1, output=str(tmp_path / "cmp"), name="c", track="mlflow",
            **dict(FAST, epochs=2))
    assert (tmp_path / "cmp" / "mlflow.db").is_file()
    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'cmp' / 'mlflow.db').resolve()}")
    runs = mlflow.search_runs(experiment_names=["c"])
    assert sorted(runs["tags.mlflow.runName"]) == ["finetune-seed0", "scratch-seed0"]
    client = mlflow.MlflowClient()
    rid = runs["run_id"][0]
    assert len(client.get_metric_history(rid, "train_loss")) == 2
    assert {"report.html", "metrics.json"} <= {a.path for a in client.list_artifacts(rid)}


def test_two_tracked_runs_in_one_process_each_in_its_own_store(tmp_path, monkeypatch):
    """A run that names its MLflow store, then one that names none: each lands in its own (the second used to land in
    the first's, whose URI stayed in the environment), and the environment and logger level are as they were."""
    import os

    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking._tracking_service import utils as mlflow_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow_store, "_tracking_uri", None)  # as in a fresh process (another test may have set it)
    data = make_folder(tmp_path / "d", classes=2, per_class=8)
    level = logging.getLogger("transferkit").level
    named = f"sqlite:///{(tmp_path / 'named.db').resolve()}"
    tk.fit(data, strategy="finetune", track="mlflow", track_uri=named, output=str(tmp_path / "a"), name="first",
           **dict(FAST, epochs=1))
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert logging.getLogger("transferkit").level == level
    tk.fit(data, strategy="finetune", track="mlflow", output=str(tmp_path / "b"), name="second",
           **dict(FAST, epochs=1))
    assert "MLFLOW_TRACKING_URI" not in os.environ

    def run_names(uri):
        client = mlflow.MlflowClient(tracking_uri=uri)
        return sorted(r.info.run_name for e in client.search_experiments() for r in client.search_runs([e.experiment_id]))

    assert run_names(named) == ["first"]
    assert run_names(f"sqlite:///{(tmp_path / 'b' / 'mlflow.db').resolve()}") == ["second"]


def test_a_tracker_named_twice_logs_once(tmp_path):
    data = make_folder(tmp_path / "d", classes=2, per_class=8)
    run = tk.fit(data, strategy="finetune", track="tensorboard,TensorBoard", output=str(tmp_path / "runs"),
                 **dict(FAST, epochs=2))
    logged = [_scalars(e.parent).get("train_loss", []) for e in (run.path / "tensorboard").rglob("events.out.tfevents*")]
    assert sorted(len(v) for v in logged if v) == [2]  # one writer, each epoch once (it was every scalar twice)
