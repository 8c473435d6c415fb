"""Every catalogued bad input through the real CLI entry point: a logged skip or one clear error, never a
traceback, and no finished run folder changed."""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import pytest

from transferkit import cli

from .catalogue import CASES, TRAIN, Case
from conftest import make_folder

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``transferkit ARGS`` in-process through ``main()``; return (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["transferkit", *args]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def tree_hash(path: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import transferkit as tk

    from conftest import FAST

    tmp = tmp_path_factory.mktemp("finished")
    data = make_folder(tmp / "data", classes=2, per_class=8)
    return tk.fit(data, strategy="finetune", **dict(FAST, epochs=1, output=str(tmp / "runs"))).path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_catalogue(case: Case, tmp_path, finished_run, capsys, caplog):
    before = tree_hash(finished_run)
    args = case.build(tmp_path, finished_run)
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        code, out, err = invoke(args, capsys)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "Traceback" not in out + err
    if case.expect == "usage":
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("Error: ") and case.fragment in last, (code, err)
    elif case.expect == "error":
        assert code == 2, (code, err)
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err  # one line, the last word
        assert case.fragment in errors[0], err
    else:
        assert code == 0, err
        assert "accuracy" in out or "mAP" in out or "WER" in out
        if case.expect == "skip":
            assert case.fragment in logged and "skipped" in logged, logged
        elif case.expect == "warn":
            assert case.fragment in logged, logged
        elif case.fragment:  # an accepted input is used, never listed as skipped
            assert case.fragment not in logged, logged
    assert tree_hash(finished_run) == before, "a finished run folder was changed"
    runs = tmp_path / "runs"
    if case.expect == "error" and runs.exists():
        assert not any(runs.iterdir()), "a failed command left a run folder behind"


def test_reliability_doc_lists_every_case():
    doc = DOC.read_text()
    for c in CASES:
        assert f"`{c.name}`" in doc, f"docs/reliability.md lacks {c.name}"


def test_full_disk_keeps_the_checkpoint_and_resume_finishes(tmp_path, capsys, monkeypatch):
    """The disk fills while the final model is saved: one clear error; the checkpoint survives; resume works."""
    import errno

    import safetensors.torch

    data = make_folder(tmp_path / "data", classes=2, per_class=8)
    real = safetensors.torch.save_file

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    code, _, err = invoke(["train", str(data), *TRAIN, "--epochs", "2", "--strategy", "finetune", "--checkpoint-every", "0",
                           "--output", str(tmp_path / "runs"), "--name", "r"], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error:") and "No space left" in err and "intact" in err
    run = tmp_path / "runs" / "r"
    assert (run / "checkpoint.pt").is_file() and not list(run.glob(".*.tmp"))
    import torch

    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    code, out, err = invoke(["train", "--resume", str(run)], capsys)
    assert code == 0, err
    assert (run / "metrics.json").is_file()
