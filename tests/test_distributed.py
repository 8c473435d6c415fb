"""Several processes (DDP on gloo, CPU): the same run as one process, one run folder, a lost process stops
all with a clear error and leaves a resumable folder."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import transferkit as tk
from transferkit import _dist
from transferkit.errors import ConfigError
from transferkit.training._sharding import GlobalBatches, SeededItems

from conftest import FAST, TINY, make_folder


def _weights(run) -> dict:
    return load_file(str(Path(run.path) / "model.safetensors"))


@pytest.mark.parametrize("strategy", ["lp-ft", "gradual"])
def test_two_processes_train_the_same_model_as_one(tmp_path, strategy):
    """lp-ft: sharded features + one probe fit + the loop; gradual: what trains changes between epochs, so DDP
    must be wrapped again. Light augmentation is on: items carry their own seeds, whichever process reads them."""
    data = make_folder(tmp_path / "data", classes=3, per_class=16)
    settings = dict(FAST, strategy=strategy, augment="light", freeze_epochs=1, patience=0,
                    cache_dir=str(tmp_path / "cache"))
    one = tk.fit(data, output=str(tmp_path / "one"), **settings)
    two = tk.fit(data, output=str(tmp_path / "two"), processes=2, **settings)
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    assert two.metrics["accuracy"] == one.metrics["accuracy"]
    assert two.metrics["confusion_matrix"] == one.metrics["confusion_matrix"]
    assert [r["train_loss"] for r in two.history] == pytest.approx([r["train_loss"] for r in one.history], rel=1e-4)
    assert [r["val_acc"] for r in two.history] == [r["val_acc"] for r in one.history]  # val gathered: each item once
    assert len(list((tmp_path / "two").iterdir())) == 1  # one run folder, written by the main process
    log = (Path(two.path) / "train.log").read_text()
    assert "world size 2" in log and "2 processes share each batch of 8 (4 each)" in log
    assert log.count("epoch 1/2:") == 1  # one voice


def _workers(pid: int) -> list[int]:
    """The launcher's worker processes (multiprocessing spawn children; not its resource tracker)."""
    import psutil

    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except (psutil.Error, OSError):
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(child.pid)
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_process_stops_the_run_with_a_clear_error_and_it_resumes_on_one(tmp_path):
    data = make_folder(tmp_path / "data", classes=3, per_class=40)
    common = ["--backbone", TINY, "--image-size", "64", "--epochs", "4", "--strategy", "finetune", "--workers", "0",
              "--checkpoint-every", "0", "--output", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    env = dict(os.environ, TRANSFERKIT_QUIET="1", TRANSFERKIT_DIST_TIMEOUT="60")
    cli = [sys.executable, "-m", "transferkit.cli", "train"]
    full = subprocess.run([*cli, data, *map(str, common), "--name", "full"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen([*cli, data, *map(str, common), "--name", "killed", "--processes", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "runs" / "killed"
    deadline = time.time() + 300
    while not (run / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    workers = _workers(proc.pid)
    assert len(workers) == 2 and proc.poll() is None, (workers, proc.poll())
    os.kill(workers[-1], signal.SIGKILL)
    killed_at = time.time()
    output, _ = proc.communicate(timeout=120)
    assert time.time() - killed_at < 60, "the surviving process did not stop in bounded time"
    assert proc.returncode == 2, output
    assert re.search(r"error: Worker process [01] of 2 was killed by SIGKILL, so all 2 were stopped", output), output
    assert "Traceback" not in output.split("error:")[-1]
    assert f"--resume {run}" in output
    assert not (run / "metrics.json").exists() and (run / "checkpoint.pt").exists()

    resumed = tk.fit(resume=run, processes=1)  # a different number of processes: the same global batches
    ref = json.loads((tmp_path / "runs" / "full" / "metrics.json").read_text())
    assert resumed.metrics["accuracy"] == ref["accuracy"]
    assert resumed.metrics["confusion_matrix"] == ref["confusion_matrix"]


def test_workers_die_with_a_killed_launcher(tmp_path):
    """SIGKILL to the launcher of --processes 2 (it cannot stop its workers): both workers end within seconds
    instead of lingering as orphans that hold memory and retry the store."""
    import psutil

    data = make_folder(tmp_path / "data", classes=3, per_class=40)
    env = dict(os.environ, TRANSFERKIT_QUIET="1", TRANSFERKIT_DIST_TIMEOUT="60")
    proc = subprocess.Popen([sys.executable, "-m", "transferkit.cli", "train", str(data), "--backbone", TINY,
                             "--image-size", "64", "--epochs", "50", "--strategy", "finetune", "--workers", "0", "--processes", "2",
                             "--output", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    workers: list[int] = []
    while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        workers = _workers(proc.pid)
    assert len(workers) == 2, workers
    time.sleep(2)  # the workers are up and training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    gone = time.time() + 15
    while time.time() < gone and any(psutil.pid_exists(w) and psutil.Process(w).status() != psutil.STATUS_ZOMBIE
                                     for w in workers):
        time.sleep(0.2)
    alive = [w for w in workers if psutil.pid_exists(w) and psutil.Process(w).status() != psutil.STATUS_ZOMBIE]
    info = [(w, psutil.Process(w).ppid(), psutil.Process(w).status(), psutil.Process(w).cmdline()[-2:]) for w in alive]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, ("workers outlived their launcher", info)


def _fails_in_rank_one():
    """A worker's own failure that is no TransferkitError (what a bug or a library error looks like)."""
    if os.environ.get("RANK") == "1":
        raise ValueError("the disk caught fire")
    time.sleep(30)  # rank 0 waits: the launcher stops it when rank 1 fails


def test_a_workers_exception_is_named_in_the_one_line_error():
    from transferkit._launch import launch
    from transferkit.errors import TrainingError

    t0 = time.time()
    with pytest.raises(TrainingError, match=r"Worker process 1 of 2 failed with ValueError: the disk caught fire "
                                            r"\(test_distributed.py:\d+\)"):
        launch(_fails_in_rank_one, 2)
    assert time.time() - t0 < 25  # the other worker was stopped, not waited for


def test_global_batches_in_one_process_are_plain_batches():
    batches = list(GlobalBatches(range(10), 4, drop_last=False))
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(GlobalBatches(range(10), 4, drop_last=True)) == 2


def test_global_batches_stride_each_batch_over_processes(monkeypatch):
    monkeypatch.setattr(_dist, "world", lambda: 3)
    seen = []
    for r in range(3):
        monkeypatch.setattr(_dist, "rank", lambda r=r: r)
        seen.append(list(GlobalBatches(range(13), 6, drop_last=False)))
    assert seen[0] == [[0, 3], [6, 9]] and seen[1] == [[1, 4], [7, 10]] and seen[2] == [[2, 5], [8, 11]]
    # 12 is a last batch too small to give each of 3 processes an item: dropped on all, the same step count
    assert len(GlobalBatches(range(13), 6, drop_last=False)) == 2
    with pytest.raises(ConfigError, match="cannot be split evenly over 3 processes.*Use --batch-size 9"):
        GlobalBatches(range(13), 8, drop_last=False)


class _Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(1).item(), random.random(), np.random.rand()


def test_seeded_items_do_not_depend_on_reading_order_and_restore_the_callers_state():
    ds = SeededItems(_Noisy(), seed=7)
    forward = [ds[i] for i in range(5)]
    torch.manual_seed(0)
    before = torch.rand(1).item()
    torch.manual_seed(0)
    backward = [ds[i] for i in reversed(range(5))][::-1]
    assert torch.rand(1).item() == before  # the caller's stream went on as if no item was read
    assert forward == backward
    assert len(set(forward)) == 5  # and the items differ from each other
    assert SeededItems(_Noisy(), seed=8)[0] != forward[0]


def test_rank_and_compare_share_their_work_over_two_processes(tmp_path):
    from transferkit.compare import compare
    from transferkit.ranking import rank

    data = make_folder(tmp_path / "data", classes=3, per_class=12)
    one = rank(tk.ImageFolderData(data), [TINY], "knn", cache_dir=tmp_path / "c1", image_size=32)
    two = rank(tk.ImageFolderData(data), [TINY], "knn", cache_dir=tmp_path / "c2", image_size=32, processes=2)
    assert two[0]["knn"] == pytest.approx(one[0]["knn"])
    (a,), (b,) = (list((tmp_path / c / "features").glob("*.npy")) for c in ("c1", "c2"))
    assert a.name == b.name and np.allclose(np.load(a), np.load(b), atol=1e-5)  # gathered in order, cached once

    result = compare(data, ["scratch", "linear-probe"], seeds=1, output=str(tmp_path / "cmp"), processes=2,
                     **dict(FAST, epochs=1, cache_dir=str(tmp_path / "c2")))
    assert [r["strategy"] for r in result["rows"][:2]] == ["scratch", "linear-probe"]
    assert sorted(p.name for p in (Path(result["path"]) / "runs").iterdir()) == ["linear-probe-seed0", "scratch-seed0"]
    assert (Path(result["path"]) / "compare.json").is_file()


def test_two_processes_train_the_same_detector_as_one(tmp_path):
    """Detection batches are dicts of tensors (padded images, concatenated boxes): every process takes its stride of
    each global batch, and val mAP is scored on every process's share together (torchmetrics' sync). Not bit for
    bit: torchvision's RPN and RoI samplers and its scale jitter draw from each process's own generator, so the
    runs agree to a few per cent, not to rounding."""
    from conftest import DETECT, make_boxes

    data = make_boxes(tmp_path / "data", "voc", n=16)
    settings = dict(DETECT, strategy="finetune", augment="light")
    one = tk.fit(data, output=str(tmp_path / "one"), **settings)
    two = tk.fit(data, output=str(tmp_path / "two"), processes=2, **settings)
    assert [r["train_loss"] for r in two.history] == pytest.approx([r["train_loss"] for r in one.history], rel=0.05)
    assert two.history[-1]["train_loss"] < two.history[0]["train_loss"]
    assert all(0 <= r["val_map"] <= 1 for r in two.history) and two.metrics["n"] == one.metrics["n"]
    assert len(list((tmp_path / "two").iterdir())) == 1  # one run folder, written by the main process
