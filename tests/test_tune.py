"""transferkit tune: trials are run folders scored on val only, the best is scored on test once, the study resumes,
a failing trial is recorded and the search goes on, and bad spaces or storages are one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.config import load_config_file
from transferkit.errors import ConfigError

from conftest import TINY, make_folder

pytest.importorskip("optuna")
FLAGS = dict(backbone=TINY, image_size=32, workers=0, cache_dir=None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("tune") / "d", classes=3, per_class=12)


def test_trials_never_see_test_and_the_best_is_scored_once(tmp_path, data):
    out = tk.tune(str(data), trials=4, output=str(tmp_path), name="t", candidates=["finetune", "linear-probe"],
                  pruner="none", **{**FLAGS, "cache_dir": str(tmp_path / "c")})
    folder = tmp_path / "t"
    assert out["complete"] + out["failed"] + out["pruned"] == 4 and out["complete"] >= 1
    for r in out["trials"]:
        if r["state"] == "complete" and r.get("same_as") is None:
            m = json.loads((Path(r["run"]) / "metrics.json").read_text())
            assert m["split"] == "val" and r["value"] == pytest.approx(m["accuracy"])
            splits = json.loads((Path(r["run"]) / "splits.json").read_text())
            assert not splits["test"]["inputs"]  # the test split is not even in the trial's data
    best = out["best"]
    assert best["test"]["split"] == "test" and 0 <= best["test"]["accuracy"] <= 1
    cfg = load_config_file(folder / "best_config.yaml")
    assert cfg["strategy"] == best["params"]["strategy"] and "data" not in cfg
    assert (folder / "report.html").is_file() and "Best trial" in (folder / "report.html").read_text()
    # --resume adds trials to the same study
    again = tk.tune(str(data), trials=2, output=str(tmp_path), name="t", resume=True, pruner="none",
                    candidates=["finetune", "linear-probe"], **{**FLAGS, "cache_dir": str(tmp_path / "c")})
    assert len(again["trials"]) == 6
    # a resumed search (or a second worker) samples afresh: it does not replay the settings the study began with
    assert [t["params"] for t in again["trials"][4:]] != [t["params"] for t in again["trials"][:2]]


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path, data, monkeypatch):
    tune_module = sys.modules["transferkit.tune"]  # the module (the package's ``tune`` is the function)
    real, calls = tune_module.fit, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory in trial 0")
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_module, "fit", flaky)
    out = tk.tune(str(data), trials=3, output=str(tmp_path), name="f", candidates=["finetune"], pruner="none",
                  **{**FLAGS, "epochs": 1, "cache_dir": str(tmp_path / "c")})
    states = [r["state"] for r in out["trials"]]
    assert states[0] == "fail" and states.count("complete") >= 1


@pytest.mark.parametrize("text, fragment", [
    ("lr: {low: 0.1, high: 0.001}", "low ≤ high"),
    ("strategy: []", "no values to choose from"),
    ("not_a_setting: [1, 2]", "unknown setting"),
    ("", "empty or not a mapping"),
    ("lr: {low: 0, high: 0.1, log: true}", "log scale"),
])
def test_bad_spaces_are_one_clear_error(tmp_path, data, text, fragment):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        tk.tune(str(data), trials=1, output=str(tmp_path), name="s", space=space, **FLAGS)
    assert not (tmp_path / "s").exists()


def test_everything_fixed_and_unreachable_storage(tmp_path, data):
    space = tmp_path / "space.yaml"
    space.write_text("strategy: linear-probe\n")
    with pytest.raises(ConfigError, match="nothing to search"):
        tk.tune(str(data), trials=1, output=str(tmp_path), name="x", space=space, **FLAGS)
    with pytest.raises(ConfigError, match="cannot be used"):
        tk.tune(str(data), trials=1, output=str(tmp_path), name="y", storage="sqlite:////no/such/dir/study.db", **FLAGS)


def test_ctrl_c_keeps_the_finished_trials(tmp_path, data):
    env = dict(os.environ, TRANSFERKIT_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-m", "transferkit.cli", "tune", str(data), "--backbone", TINY,
                             "--image-size", "32", "--workers", "0", "--trials", "50", "--strategies", "finetune",
                             "--pruner", "none", "--epochs", "1", "--output", str(tmp_path), "--name", "c"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trials = tmp_path / "c" / "trials"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(trials.glob("*/metrics.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    result = json.loads((tmp_path / "c" / "tune.json").read_text())
    assert result["complete"] >= 1 and result["best"] is not None, output  # the one interrupted may be lost
    assert "finished trial(s) kept" in output and "--resume" in output


def test_without_a_test_split_the_given_val_is_held_out_for_the_best_trial(tmp_path):
    """train/ and val/ folders: trials choose on part of train, and the best is scored once on the given val."""
    given = make_folder(tmp_path / "given", classes=2, per_class=15, split=True)
    out = tk.tune(str(given), trials=2, output=str(tmp_path), name="t", candidates=["linear-probe"], pruner="none",
                  space=None, **{**FLAGS, "cache_dir": str(tmp_path / "c"), "strategy": "finetune", "epochs": 1})
    val = {str(p.resolve()) for p in (given / "val").rglob("*.png")}
    assert out["best"]["test"]["split"] == "test" and out["best"]["test"]["n"] == len(val)
    for r in out["trials"]:
        if r["run"]:
            seen = json.loads((Path(r["run"]) / "splits.json").read_text())
            assert not val & {i for s in seen.values() for i in s["inputs"]}
