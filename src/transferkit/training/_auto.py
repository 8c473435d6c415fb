"""``--strategy auto`` where the task and data have several candidates: each candidate is an ordinary run on
train and val (never test), the cheapest first, while ``--budget`` seconds allow; the best validation score is
kept, and only the kept model is scored on the held-out split — once, in the run folder the user asked for, with
every candidate listed in its metrics.json and report (the candidates' own folders under ``candidates/``)."""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from pathlib import Path

from .. import _dist, adaptation
from .. import _runfolder as rf
from ..config import RunConfig
from ..data import Items, LabelledData
from ..evaluation import mcnemar
from ..modalities import modality_of
from ..strategies import get_strategy
from ..tasks import get_task
from ._callbacks import Callback
from ._fit import Run, _hooks, _new_run_dir, _run

log = logging.getLogger("transferkit")
DEFAULT_BUDGET = 1800.0
#: McNemar's one-sided p a costlier candidate needs on val to replace a cheaper one (lenient: evidence, not proof)
EVIDENCE = 0.2
CANDIDATES = "candidates"


class OverBudget(Exception):
    """A candidate stopped because, at its pace, it would end after the budget."""


def auto_candidates(cfg: RunConfig, data: LabelledData) -> tuple[str, ...]:
    """``--strategy auto`` resolved, in this one place: the strategies it tries for this task and data, cheapest
    first (one: that is the strategy; none: the user named one)."""
    if cfg.strategy != "auto":
        return ()
    data.setup()
    task, modality, train = get_task(cfg.task), modality_of(data), data.splits_["train"]
    if cfg.target:  # adaptation runs its method on the single default strategy
        return (task.default_strategy(modality, train),)
    return tuple(task.auto_candidates(modality, train))


def adapt_candidates(cfg: RunConfig) -> tuple[str, ...]:
    """The methods ``--adapt auto`` trains, one run each, with a strategy that trains the backbone (with a probe,
    auto chooses among heads inside one run: nothing here)."""
    if not adaptation.get_method(cfg.adapt).searches or not cfg.target or cfg.strategy == "auto" \
            or not get_strategy(cfg).trains_backbone:
        return ()
    return adaptation.TRAINED_AUTO


def run_adapt_auto(cfg: RunConfig, data: LabelledData, methods: tuple[str, ...], on_epoch_end=None) -> Run:
    """``--adapt auto`` while fine-tuning: each method (source only among them) an ordinary run with the target,
    while ``--budget`` allows; the one whose target predictions have the highest soft neighbourhood density is
    kept — no target label is read — and scored again in the run folder ``cfg`` names. Not the lowest DEV: it
    chose the best method on 1 of 4 Office-Caltech pairs, SND on 2 (docs/benchmarks.md)."""
    t0, budget = time.time(), cfg.budget or DEFAULT_BUDGET
    top = _dist.broadcast(_new_run_dir(cfg) if _dist.is_main() else None)
    log.info("adapt auto: candidates %s, chosen by soft neighbourhood density on the target within %.0f s "
             "(--budget)", ", ".join(methods), budget)
    tried, runs = [], {}
    try:
        for i, name in enumerate(methods):
            tried.append(_candidate(cfg, data, name, top, t0, budget, i == 0, runs, on_epoch_end, key="adapt",
                                    score=lambda run: ("target SND", run.metrics["adaptation"]["snd"])))
    except BaseException:
        if _dist.is_main() and not runs:
            shutil.rmtree(top, ignore_errors=True)
        raise
    done = [r for r in tried if r["status"] == "done" and math.isfinite(r["val"])]
    kept = max(done, key=lambda r: r["val"]) if done else tried[0]
    kept["status"] = "kept"
    why = ("the highest soft neighbourhood density of the target predictions (Saito et al., ICCV 2021); no target "
           "label read")
    f_cfg = copy.deepcopy(cfg)
    f_cfg.adapt = kept["adapt"]
    f_cfg.extra["auto"] = {"choosing": "adapt", "metric": "target SND (higher is better)", "budget": budget,
                           "selection": "each method trained on the source, with the target", "candidates": tried,
                           "kept": kept["adapt"], "why": why}
    log.info("adapt auto: kept %s (%s)", kept["adapt"], why)
    chosen = runs[kept["adapt"]]
    return _run(f_cfg, data, top, None, None, since=t0, adopted={
        "state": rf.read_model(chosen.path)[1], "history": chosen.history, "probe": chosen.metrics.get("probe")})


def run_auto(cfg: RunConfig, data: LabelledData, candidates: tuple[str, ...], on_epoch_end=None) -> Run:
    """Run the candidates on train and val (carved from train when there is no test split), keep the best
    validation score, and score that model once on the held-out split in the run folder ``cfg`` names."""
    t0 = time.time()
    budget = cfg.budget or DEFAULT_BUDGET
    choosing, final, how = data.for_choosing()
    if not len(choosing.splits_["val"]) or not len(choosing.splits_["train"]):
        log.warning("strategy auto: too few training items to hold some out for choosing; %s runs alone",
                    candidates[0])
        cfg.strategy = candidates[0]
        return _run(cfg, data, None, None, on_epoch_end)
    task = get_task(cfg.task)
    metric = task.compare_metrics[0] if task.compare_metrics else "accuracy"
    sign = -1.0 if metric in task.lower_is_better else 1.0
    top = _dist.broadcast(_new_run_dir(cfg) if _dist.is_main() else None)
    log.info("strategy auto: candidates %s, chosen by val %s within a budget of %.0f s (--budget); %s",
             ", ".join(candidates), metric, budget, how)
    tried, runs = [], {}
    try:
        for i, name in enumerate(candidates):
            tried.append(_candidate(cfg, choosing, name, top, t0, budget, i == 0, runs, on_epoch_end,
                                    score=lambda run: (f"val {metric}", run.metrics.get(metric))))
    except BaseException:
        if _dist.is_main() and not runs:  # nothing finished: no folder left behind (a bad setting, Ctrl-C)
            shutil.rmtree(top, ignore_errors=True)
        raise
    kept = None
    for row in tried:  # a costlier candidate replaces a cheaper one on evidence, not on a tie or a few items
        if row["status"] == "done" and (kept is None or _better(task, row, kept, sign, data.classes_)):
            kept = row
    kept["status"] = "kept"
    why = (f"val {metric} {kept['val']:.4f}; a costlier candidate is kept only when it scores higher on val and "
           f"McNemar's one-sided test on the val items gives p < {EVIDENCE}")
    chosen = runs[kept["strategy"]]
    f_cfg = copy.deepcopy(cfg)
    f_cfg.strategy = kept["strategy"]
    f_cfg.backbone = chosen.config.backbone
    f_cfg.extra["auto"] = {"choosing": "strategy", "metric": f"val {metric}", "budget": budget, "selection": how,
                           "candidates": tried,
                           "kept": kept["strategy"], "why": why}
    log.info("auto: kept %s (%s); scoring it on the held-out split", kept["strategy"], why)
    carved = len(final.splits_["train"]) < len(data.splits_["train"])
    if carved and not get_strategy(f_cfg).trains_backbone:  # a probe: refitted on all of train, for seconds
        refit = copy.copy(final)
        refit.splits_ = {"train": data.splits_["train"], "val": Items([], []), "test": final.splits_["test"]}
        f_cfg.extra["auto"]["refit"] = "the kept probe refitted on all of train (the part held out to choose too)"
        return _run(f_cfg, refit, top, None, None, since=t0)
    state = rf.read_model(chosen.path)[1]
    return _run(f_cfg, final, top, None, None, adopted={"state": state, "history": chosen.history,
                                                        "probe": chosen.metrics.get("probe")}, since=t0)


def _candidate(cfg: RunConfig, choosing: LabelledData, name: str, top, t0: float, budget: float, first: bool,
               runs: dict, on_epoch_end, score, key: str = "strategy") -> dict:
    """One candidate (``cfg`` with ``key`` set to ``name``) as an ordinary run under ``top/candidates`` (skipped
    when the budget is spent, stopped when it would overrun it); its row for metrics.json, with ``score(run)``'s
    (label, value) as ``val``."""
    row = {key: name}
    if not first and time.time() - t0 >= budget:
        return {**row, "status": "skipped", "why": f"the budget of {budget:.0f} s was spent"}
    c_cfg = copy.deepcopy(cfg)
    setattr(c_cfg, key, name)
    c_cfg.output, c_cfg.name = str(top / CANDIDATES), name.replace(":", "")
    c_cfg.track_group = c_cfg.track_group or str(top)
    watch = _Watch(t0, budget, first)
    try:
        run = _run(c_cfg, copy.copy(choosing), None, None, [watch, *_hooks(on_epoch_end)])
    except OverBudget as exc:
        log.info("auto: %s %s", name, exc)
        return {**row, "status": "stopped", "why": str(exc), "seconds": round(time.time() - watch.start, 1)}
    except Exception as exc:  # noqa: BLE001 - a later candidate's failure loses nothing the earlier ones made
        if first:
            raise
        log.warning("auto: candidate %s failed (%s: %s); choosing among the others", name, type(exc).__name__, exc)
        return {**row, "status": "failed", "why": f"{type(exc).__name__}: {str(exc)[:200]}"}
    runs[name] = run
    label, value = score(run)
    log.info("auto: %s scored %s %s in %.0f s", name, label, "—" if value is None else f"{value:.4f}",
             run.metrics["seconds"])
    return {**row, "status": "done", "val": value, "seconds": run.metrics.get("seconds"), "run": str(run.path)}


def _better(task, row: dict, leader: dict, sign: float, labels: list[str]) -> bool:
    """Whether candidate ``row`` replaces the cheaper ``leader``: a higher val score and, where the task scores
    items pairwise (classification: right or wrong), McNemar's one-sided p below EVIDENCE on the same val items.
    Measured: on hymenoptera's 49 held-out training images lp-ft "won" by 1–2 items and lost 1.7 points on the
    given val; on natural_images' 1,034 val images it won by 9–13 (p 0.04–0.15) and gained 0.8."""
    if sign * row["val"] <= sign * leader["val"]:
        return False
    metric = task.paired_test_metric
    if metric is None:
        return True
    a = task.item_values(Path(row["run"]), labels).get(metric)  # a class method: it reads the run folder alone
    b = task.item_values(Path(leader["run"]), labels).get(metric)
    if a is None or b is None or len(a) != len(b):
        return True
    return mcnemar(a, b, alternative="greater")["p"] < EVIDENCE


class _Watch(Callback):
    """After each epoch of a candidate: stop it (``OverBudget``) when, at its pace so far, it would end after the
    budget. The first candidate always finishes: it is the one the run falls back to."""

    def __init__(self, t0: float, budget: float, first: bool):
        self.t0, self.budget, self.first, self.start = t0, budget, first, time.time()

    def on_epoch_end(self, loop, row: dict) -> bool:
        now, done = time.time(), row["epoch"]
        ends = now + (now - self.start) / done * (loop.epochs - done) - self.t0
        if _dist.broadcast(not self.first and ends > self.budget):  # decided once, by the main process
            raise OverBudget(f"stopped after epoch {done}/{loop.epochs}: at its pace it would end at {ends:.0f} s of "
                             f"the {self.budget:.0f} s budget")
        return False


__all__ = ["adapt_candidates", "auto_candidates", "run_adapt_auto", "run_auto"]
