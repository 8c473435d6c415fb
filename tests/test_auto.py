"""--strategy auto with several candidates: each an ordinary run on train and val, chosen on val within the
budget; the held-out split is scored once, for the kept model alone."""

from __future__ import annotations

import json

import transferkit as tk
from conftest import make_folder


def _splits(path):
    return json.loads((path / "splits.json").read_text())


def test_auto_tries_the_candidates_on_val_and_scores_only_the_kept_one_on_test(image_folder, run_kwargs):
    run = tk.fit(str(image_folder), **run_kwargs)  # no --strategy: auto
    auto = run.metrics["auto"]
    tried = {c["strategy"]: c for c in auto["candidates"]}
    assert list(tried) == ["linear-probe", "lp-ft"]  # the cheap candidate first
    kept = [c for c in auto["candidates"] if c["status"] == "kept"]
    assert len(kept) == 1 and kept[0]["strategy"] == auto["kept"] == run.metrics["strategy"]
    probe, lpft = auto["candidates"]
    if kept[0] is lpft:  # the costlier candidate needs a higher val score and McNemar evidence on the val items
        assert lpft["val"] > probe["val"]
    assert run.metrics["split"] == "test"
    test_inputs = set(_splits(run.path)["test"]["inputs"])
    for c in auto["candidates"]:  # every candidate is a run folder scored on val, never on test
        cand = tk.load_run(c["run"])
        assert cand.metrics["split"] == "val" and cand.metrics["accuracy"] == c["val"]
        assert not test_inputs & {i for s in _splits(cand.path).values() for i in s["inputs"]}
        assert cand.path.parent == run.path / "candidates"
    assert run.metrics["seconds"] >= sum(c["seconds"] for c in auto["candidates"])  # the whole choice counted
    pred = tk.load(run.path).predict([test_inputs.pop()])
    assert pred[0]["topk"]
    page = (run.path / "report.html").read_text()
    assert "Strategy auto" in page and "lp-ft" in page and "linear-probe" in page


def test_without_a_test_split_the_given_val_is_held_out_and_part_of_train_chooses(tmp_path, run_kwargs):
    data = make_folder(tmp_path / "given", classes=2, per_class=18, split=True)  # train/ and val/ folders
    given_val = sorted(str(p.resolve()) for p in (data / "val").rglob("*.png"))
    run = tk.fit(str(data), **run_kwargs)
    splits = _splits(run.path)
    assert run.metrics["split"] == "test" and sorted(splits["test"]["inputs"]) == given_val
    assert run.metrics["n"] == len(given_val)
    assert "held out" in run.metrics["auto"]["selection"]
    given_train = sorted(str(p.resolve()) for p in (data / "train").rglob("*.png"))
    if run.metrics["strategy"] == "linear-probe":  # the kept probe is refitted on all of train, the carved part too
        assert sorted(splits["train"]["inputs"]) == given_train and "refit" in run.metrics["auto"]
    else:  # a fine-tuned model is kept as trained: the carved val stays out of its train
        assert splits["val"]["inputs"] and set(splits["val"]["inputs"]) < set(given_train)
    for c in run.metrics["auto"]["candidates"]:
        seen = {i for s in _splits(tk.load_run(c["run"]).path).values() for i in s["inputs"]}
        assert not seen & set(given_val)


def test_a_budget_spent_by_the_first_candidate_skips_or_stops_the_rest(image_folder, run_kwargs, monkeypatch):
    import itertools
    import types

    from transferkit.training import _auto

    clock = itertools.count(0, 5)  # auto's clock moves 5 s a reading: a tiny probe on an idle machine spends it too
    monkeypatch.setattr(_auto, "time", types.SimpleNamespace(time=lambda: float(next(clock))))
    run = tk.fit(str(image_folder), budget=1, **run_kwargs)
    first, second = run.metrics["auto"]["candidates"]
    assert first["status"] == "kept" and run.metrics["strategy"] == "linear-probe"
    assert second["status"] in ("skipped", "stopped") and "budget" in second["why"]


def test_a_named_strategy_runs_alone(image_folder, run_kwargs):
    run = tk.fit(str(image_folder), strategy="linear-probe", **run_kwargs)
    assert "auto" not in run.metrics and not (run.path / "candidates").exists()


def test_a_costlier_candidate_needs_paired_evidence_on_val_to_replace_a_cheaper_one(tmp_path):
    """Two items in its favour out of 49 is a tie in all but name; thirteen more out of 1,034 is evidence."""
    import csv

    from transferkit.tasks import get_task
    from transferkit.training._auto import _better

    def run(name: str, right: list[bool]):
        folder = tmp_path / name
        folder.mkdir()
        with open(folder / "predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["input", "true", "pred", "confidence"])
            w.writerows([f"x{i}", "a", "a" if r else "b", "0.9"] for i, r in enumerate(right))
        return {"run": str(folder), "val": sum(right) / len(right)}

    task = get_task("classify")
    few_probe = run("few-probe", [True] * 47 + [False, False])
    few_lpft = run("few-lpft", [True] * 49)  # right on the 2 items the probe missed, and no others: p = 0.25
    assert few_lpft["val"] > few_probe["val"] and not _better(task, few_lpft, few_probe, 1.0, ["a", "b"])
    probe = run("probe", [True] * 980 + [False] * 54)
    lpft = run("lpft", [True] * 960 + [False] * 20 + [True] * 33 + [False] * 21)  # 33 vs 20 discordant items
    assert _better(task, lpft, probe, 1.0, ["a", "b"])
    assert not _better(task, probe, probe, 1.0, ["a", "b"])  # equal scores: the cheaper stays
