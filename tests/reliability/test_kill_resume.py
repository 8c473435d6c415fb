"""A training process killed with SIGKILL mid-run resumes to the same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, make_folder

ENV = dict(os.environ, TRANSFERKIT_QUIET="1")


def train(*args):
    return [sys.executable, "-m", "transferkit.cli", "train", *map(str, args)]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    data = make_folder(tmp_path / "data", classes=3, per_class=40)
    common = ["--backbone", TINY, "--image-size", "64", "--epochs", "4", "--strategy", "finetune", "--workers", "0",
              "--checkpoint-every", "0",
              "--output", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    full = subprocess.run(train(data, *common, "--name", "full"), env=ENV, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(train(data, *common, "--name", "killed"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "runs" / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run = tmp_path / "runs" / "killed"
    assert not (run / "metrics.json").exists(), "the run finished before it could be killed"
    res = subprocess.run(train("--resume", run), env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    a = json.loads((tmp_path / "runs" / "full" / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
    ha = (tmp_path / "runs" / "full" / "history.csv").read_text().splitlines()
    hb = (run / "history.csv").read_text().splitlines()
    col = ha[0].split(",").index("train_loss")
    assert [float(r.split(",")[col]) for r in ha[1:]] == pytest.approx([float(r.split(",")[col]) for r in hb[1:]], rel=1e-5)
