"""Registered tasks hold no run state: runs loaded one after the other in one process decode as each did alone."""

from __future__ import annotations

import csv
import json

import pytest

import transferkit as tk
from transferkit.tasks import get_task, tasks

from conftest import DETECT, make_boxes
from test_asr import FAST, make_corpus, tiny_whisper_asr  # noqa: F401  (the fixture)


def _rows(run) -> list[dict]:
    with open(run / "predictions.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _registry_state() -> dict:
    return {name: dict(vars(cls)) for name, cls in tasks().items()}


def _other_language(corpus, root):
    """The same clips transcribed in other letters (a → x, b → y, c → z): another CTC vocabulary."""
    with open(corpus, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    root.mkdir()
    out = root / "corpus.csv"
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "transcript", "group"])
        for r in rows:
            w.writerow([str(corpus.parent / r["file"]), r["transcript"].translate(str.maketrans("ABC", "XYZ")), r["group"]])
    return out


def test_two_asr_runs_in_one_process_decode_as_they_did_alone(tmp_path, tiny_whisper_asr):  # noqa: F811
    pytest.importorskip("flashlight.lib.text.decoder")
    corpus = make_corpus(tmp_path / "corpus")
    common = dict(task="asr", backbone=f"hf:{tiny_whisper_asr}", head="ctc", strategy="finetune",
                  output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **{**FAST, "epochs": 3})
    before = _registry_state()
    beam = tk.fit(str(corpus), decode="lexicon", **common).path
    greedy = tk.fit(str(_other_language(corpus, tmp_path / "other")), **common).path
    a, b = tk.load(beam), tk.load(greedy)  # loaded in this order, in one process
    assert a.task.beam is not None and b.task.beam is None  # the second does not inherit the first's lexicon beam
    assert a.labels != b.labels
    for run, pred in ((beam, a), (greedy, b), (beam, tk.load(beam))):
        rows = _rows(run)
        got = pred.predict([r["input"] for r in rows])
        assert [p["transcript"] for p in got] == [r["hypothesis"] for r in rows]
    assert _registry_state() == before  # nothing was written to a registered task


def test_two_detection_runs_in_one_process_decode_as_they_did_alone(tmp_path):
    before = _registry_state()
    first = tk.fit(make_boxes(tmp_path / "a", "voc", n=16), output=str(tmp_path / "runs"), **DETECT).path
    second = tk.fit(make_boxes(tmp_path / "b", "coco", n=16, seed=1), output=str(tmp_path / "runs"),
                    score_threshold=0.05, **DETECT).path
    a, b = tk.load(first), tk.load(second)
    assert (a.task.threshold, b.task.threshold) == (0.5, 0.05)
    assert set(a.task.records).isdisjoint(b.task.records)  # each run's own boxes
    for run, pred in ((first, a), (second, b)):
        rows = _rows(run)  # the boxes at or above the run's threshold, of every test image
        inputs = [json.loads(line)["input"] for line in (run / "detections.jsonl").read_text().splitlines()]
        got = [(p["input"], b["label"], round(b["score"], 3)) for p in pred.predict(inputs) for b in p["boxes"]]
        assert len(got) > 0 or run == first
        assert got == [(r["input"], r["label"], round(float(r["score"]), 3)) for r in rows]
    assert _registry_state() == before


def test_the_registry_builds_a_new_task_object_every_time():
    cls = get_task("asr")
    assert isinstance(cls, type) and cls() is not cls()
