"""The command line, run as a user runs it: a subprocess, its exit code and what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY, make_folder

ENV = dict(os.environ, TRANSFERKIT_QUIET="1", HF_HUB_OFFLINE="1", COLUMNS="200")


def tk(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "transferkit.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


def one_clear_error(res, *fragments):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0], res.stderr
    for f in fragments:
        assert f in " ".join(res.stderr.split()), res.stderr


@pytest.fixture
def cli_run(tmp_path):
    data = make_folder(tmp_path / "data", classes=2, per_class=10)
    res = tk("train", data, "--backbone", TINY, "--image-size", 32, "--epochs", 1, "--strategy", "finetune",
             "--output", tmp_path / "runs", "--name", "r1", "--cache-dir", tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    assert "accuracy" in res.stdout and "run folder" in res.stdout
    return tmp_path / "runs" / "r1", data


def test_train_predict_evaluate(cli_run):
    run, data = cli_run
    res = tk("predict", run, data / "class1", "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert len(rows) == 10 and all(r["label"] in ("class0", "class1") for r in rows)
    res = tk("predict", run, data / "class0" / "0.png", "--csv")
    assert res.stdout.splitlines()[0] == "input,label,probability"
    res = tk("evaluate", run, "--json")
    m = json.loads(res.stdout)
    assert m["accuracy"] == json.loads((run / "metrics.json").read_text())["accuracy"]


def test_models_lists_packaged_and_sources():
    res = tk("models")
    assert res.returncode == 0
    for s in ("packaged:efficientnet_lite0", "timm:", "file:", "run:", "random:"):
        assert s in res.stdout


def test_user_mistakes_are_one_clear_line(tmp_path, cli_run):
    run, data = cli_run
    one_clear_error(tk("train", tmp_path / "nope"), "does not exist")
    one_clear_error(tk("train", make_folder(tmp_path / "one", classes=1, per_class=4)), "1 class", "at least 2 classes")
    small = make_folder(tmp_path / "small", classes=2, per_class=6)
    for f in list((small / "class1").iterdir())[1:]:
        f.unlink()
    one_clear_error(tk("train", small, "--backbone", TINY), "Class 'class1' has 1 item")
    one_clear_error(tk("train", data, "--backbone", "packaged:efficientnet_lite7"), "Unknown packaged backbone",
                    "efficientnet_lite0")
    one_clear_error(tk("train", data, "--strategy", "finetuning", "--backbone", TINY), "Unknown strategy")
    (tmp_path / "t.csv").write_text("file,y\na.png,1\n")
    one_clear_error(tk("train", tmp_path / "t.csv", "--backbone", TINY), "no column")
    one_clear_error(tk("predict", tmp_path, data / "class0"), "not a transferkit run folder")
    one_clear_error(tk("evaluate", data), "not a transferkit run folder")
    (run / "model.safetensors").rename(run / "moved.safetensors")
    one_clear_error(tk("predict", run, data / "class0"), "has no model.safetensors")
    (run / "moved.safetensors").rename(run / "model.safetensors")
    one_clear_error(tk("train", "--resume", run), "already finished")
    # no failed command above touched the finished run
    assert json.loads((run / "metrics.json").read_text())["n"] > 0


def test_ctrl_c_exits_130_with_advice(monkeypatch, capsys, tmp_path):
    import sys

    from transferkit import cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit", interrupted)
    monkeypatch.setattr(sys, "argv", ["transferkit", "train", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 130 and "--resume" in capsys.readouterr().err
