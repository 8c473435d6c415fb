"""Compare strategies on one split with paired seeds, and measure the gain over scratch with an interval
over seeds × evaluation items (docs/statistics.md)."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import _dist
from . import _runfolder as rf
from ._launch import across_processes, join_process_group
from ._runfolder import write_json
from .config import resolve_config
from .data import LabelledData
from .errors import ConfigError
from .evaluation import crossed_interval, dominant_source, mcnemar
from .modalities import modality_of
from .reports import write_compare_report, write_sweep_report
from .strategies import get_strategy
from .tasks import get_task, read_data
from .training import fit, load_run

log = logging.getLogger("transferkit")


def paired_gains(task, runs: list, baseline: list, labels: list[str], values: list[dict] | None = None,
                 base_values: list[dict] | None = None) -> dict[str, dict[str, Any]]:
    """Gain of ``runs`` over ``baseline`` (paired by seed and by evaluation item) for every compared metric.

    Each gain has a 95% interval over seeds × items (``evaluation.crossed_interval``), the
    variance split between the two sources, and, for right/wrong outcomes, McNemar's exact test per seed
    and pooled over seeds. ``values``, ``base_values``: the runs' and the baseline runs' ``item_values``, when
    already read.
    """
    values = values if values is not None else [task.item_values(r.path, labels) for r in runs]
    base = base_values if base_values is not None else [task.item_values(r.path, labels) for r in baseline]
    out: dict[str, dict[str, Any]] = {}
    for m in task.compare_metrics:
        sign = -1.0 if m in task.lower_is_better else 1.0  # an error rate's gain is how much lower it is
        centre = sign * float(np.mean([r.metrics[m] for r in runs]) - np.mean([r.metrics[m] for r in baseline]))
        if all(m in v for v in values + base):
            d = sign * np.stack([v[m] - b[m] for v, b in zip(values, base)])
        else:  # no per-item values: seeds are the only source of variation we can see
            d = sign * np.array([[r.metrics[m] - b.metrics[m] for r, b in zip(runs, baseline)]])
        out[m] = crossed_interval(d, centre=centre)
    if task.paired_test_metric:
        k = task.paired_test_metric
        out[task.compare_metrics[0]]["mcnemar"] = paired_test([v[k] for v in values], [b[k] for b in base])
    return out


def paired_test(outcomes: list[np.ndarray], base: list[np.ndarray]) -> dict[str, Any]:
    """McNemar's exact test on paired right/wrong outcomes (one array per seed): per seed and pooled over seeds."""
    return {"per_seed_p": [mcnemar(a, b)["p"] for a, b in zip(outcomes, base)],
            "pooled": mcnemar(np.concatenate(outcomes), np.concatenate(base))}


BASELINES = {  # how a warning names the reference line, and what it advises
    "scratch": ("training from scratch", "NEGATIVE TRANSFER",
                "The pretrained features hurt on this data: try another backbone, more fine-tuning (finetune, lp-ft), "
                "or check that the inputs match the backbone's domain."),
    "source only": ("the source-only run", "NEGATIVE TRANSFER",
                    "Adapting hurts here beyond noise: keep the source-only model, or try another method."),
}


def transfer_warnings(rows: list[dict], metric: str = "accuracy", baseline: str = "scratch") -> list[str]:
    """Follow the headline gain's interval: NEGATIVE TRANSFER (WORSE THAN a baseline other than scratch) when all of
    it is below 0, "no clear gain" when it straddles 0 (with which source of variation to reduce)."""
    against, label, advice = BASELINES.get(baseline) or (
        f"the {baseline} model", f"WORSE THAN {baseline.upper()}",
        f"Training lost more than it taught here: keep the {baseline} model, or give this line more data or more steps.")
    msgs = []
    for r in rows:
        g = r.get("gain")
        if not g:
            continue
        test = g.get("mcnemar")
        p = f" (McNemar's exact test, pooled over seeds: p = {test['pooled']['p']:.2g})" if test else ""
        if g.get("low") is None:
            msgs.append(f"No verdict: {r['strategy']} vs {baseline} is {g['mean']:+.1%} in {metric}, but "
                        f"{g.get('too_few', 'there are too few evaluation items')}; evaluate on more items.")
        elif g["high"] < 0:
            msgs.append(f"{label}: {r['strategy']} is {-g['mean']:.1%} worse than {against} in {metric}, 95% interval "
                        f"[{g['low']:+.1%}, {g['high']:+.1%}]{p}. {advice}")
        elif g["low"] <= 0:
            msgs.append(f"No clear gain: {r['strategy']} vs {baseline} is {g['mean']:+.1%} in {metric}, and the 95% "
                        f"interval [{g['low']:+.1%}, {g['high']:+.1%}] includes 0{p}; {dominant_source(g)}.")
    return msgs


@across_processes
def compare(data: LabelledData | str, strategies: list[str], seeds: int = 3, output: str | Path = "runs",
            name: str | None = None, first_seed: int = 0, resume: bool = False, **settings) -> dict[str, Any]:
    """Train every strategy with every seed on the same split; write ``compare.json`` and a report.

    ``processes``: every run shares each batch over this many worker processes (see :func:`fit`).

    Returns:
        The comparison: rows per strategy (mean ± std of accuracy and macro-F1, time, gain over
        scratch with its interval), warnings, and the run folders.
    """
    _check_plan(strategies, seeds, settings)  # every name and setting before the first run trains
    data, out_dir = open_comparison(data, settings, output, name, resume)
    results = run_grid(data, {s: plan_settings(s) for s in strategies}, range(first_seed, first_seed + seeds), out_dir,
                       resume, settings)
    if not _dist.is_main():  # the main process reads the run folders and writes the comparison
        return _dist.broadcast(None)
    task = get_task(settings.get("task", "classify"))()
    metric_names = task.compare_metrics
    headline = metric_names[0]
    rows = []
    ref = next((s for s in results if plan_settings(s)["strategy"] == task.baseline_strategy), "scratch")
    scratch = [r for r, _ in results.get(ref, [])]
    scratch_values = [task.item_values(r.path, data.classes_) for r in scratch]  # read once, paired with every strategy
    for s, runs in results.items():
        row: dict[str, Any] = {"strategy": s, "baseline": s == ref}
        for m in metric_names:
            vals = [r.metrics[m] for r, _ in runs]
            row.update({m: vals, f"{m}_mean": float(np.mean(vals)), f"{m}_std": float(np.std(vals))})
        row.update(seconds_mean=float(np.mean([t for _, t in runs])), runs=[str(r.path) for r, _ in runs])
        values = scratch_values if s == ref and scratch else [task.item_values(r.path, data.classes_) for r, _ in runs]
        if all(headline in v for v in values):  # the headline's own 95% interval over seeds × items
            row["interval"] = crossed_interval(np.stack([v[headline] for v in values]))
        if scratch and s != ref:
            row["gains"] = paired_gains(task, [r for r, _ in runs], scratch, data.classes_, values, scratch_values)
            row["gain"] = row["gains"][headline]
        rows.append(row)
    baseline = modality_of(data).baseline_features(data.splits_["train"], data.splits_[data.eval_split]) \
        if task.classic_baseline else None
    if baseline is not None:
        rows.append(no_transfer_row(task, data, *baseline))
    first = next(iter(results.values()))[0][0]
    result = {"data": data.location, "backbone": first.config.backbone,
              "seeds": seeds, "split": first.metrics["split"], "n_eval": first.metrics["n"], "rows": rows,
              "metrics": list(metric_names), "baseline": ref,
              "lower_is_better": list(task.lower_is_better), "warnings": transfer_warnings(rows, headline, ref)}
    return close_comparison(out_dir, result)


def close_comparison(out_dir: Path, result: dict) -> dict:
    """Log the warnings, write compare.json and the report; every process gets the result."""
    for w in result["warnings"]:
        log.warning(w)
    write_json(out_dir / "compare.json", result)

    write_compare_report(out_dir, result)
    result["path"] = str(out_dir)
    return _dist.broadcast(result)


def open_comparison(data, settings: dict, output, name: str | None, resume: bool, prefix: str = "compare",
                    before=None):
    """(the data, scanned and split once for every run; the comparison's folder, new unless ``resume``).
    ``before(data)`` checks what else the comparison reads before its folder is made: a bad input leaves none."""
    join_process_group(bool(settings.get("cpu")))
    if isinstance(data, (str, Path)):
        data = read_data(resolve_config({**settings, "data": str(data)}))
    settings.pop("data", None)
    out_dir = _dist.broadcast(Path(output) / (name or f"{prefix}-{Path(data.location).stem}-{datetime.now():%Y%m%d-%H%M%S}"))
    if _dist.broadcast(out_dir.exists()) and not resume:
        raise ConfigError(f"Comparison folder {out_dir} already exists", "a new comparison name",
                          "Choose another --name, or continue it (more seeds, or after an interruption) with --resume")
    data.setup()
    if before is not None:
        before(data)
    if _dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    return data, out_dir


def run_grid(data, variants: dict[str, dict], seeds, out_dir: Path, resume: bool, settings: dict,
             **given) -> dict[str, list]:
    """Train every variant (a name → its own settings) with every seed on ``data``'s one split, under
    ``out_dir/runs``; with ``resume``, reuse finished runs and continue interrupted ones. ``given``: inputs read
    once for every run (``fit``'s ``target_data``). Returns name → [(run, seconds)] in seed order."""
    results: dict[str, list] = {v: [] for v in variants}
    for seed in seeds:
        for v, own in variants.items():
            t0 = time.time()
            log.info("compare: %s, seed %d", v, seed)
            run_dir = out_dir / "runs" / f"{v.replace(':', '').replace(' + ', '-').replace(' ', '-')}-seed{seed}"
            done = _earlier_run(run_dir, {**settings, **own}) if resume else None
            if done is not None:  # finished before: reused, with the time it took then
                results[v].append((done, done.metrics.get("seconds", 0.0)))
                continue
            if resume and (run_dir / "checkpoint.pt").is_file():
                run = fit(resume=run_dir)
            else:
                if resume and run_dir.is_dir() and _dist.is_main():  # stopped before its first checkpoint
                    log.info("compare: %s stopped before anything worth keeping; training it again", run_dir)
                    shutil.rmtree(run_dir)
                run = fit(data, **{**settings, **own}, seed=seed, output=str(out_dir / "runs"), name=run_dir.name,
                          track_group=str(out_dir), **given)
            results[v].append((run, time.time() - t0))
    return results


def _earlier_run(run_dir: Path, settings: dict):
    """The finished run a resumed comparison reuses (None: none there yet); a run trained with other settings is
    refused, so one comparison never mixes two recipes."""
    if not (run_dir / rf.METRICS).is_file():
        return None
    saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    asked = {k: v for k, v in settings.items() if k in saved and k not in ("output", "name", "processes")}
    wanted = resolve_config(asked).to_dict()  # typed as the saved config is
    changed = [k for k in asked if saved[k] != wanted[k]]
    if changed:
        raise ConfigError(f"{run_dir} was trained with other settings ({', '.join(f'{k}={saved[k]!r}' for k in changed)})",
                          "the settings of the comparison being resumed", "Resume with the same settings, or start a new "
                          "comparison (another --name)")
    return load_run(run_dir)


def _check_plan(strategies: list[str], seeds: int, settings: dict) -> None:
    if not strategies:
        raise ConfigError("No strategies to compare", "a comma-separated list, e.g. scratch,linear-probe,finetune")
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"A strategy is listed twice in {','.join(strategies)}", "each strategy once")
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds={seeds} is too small", "at least 1 seed (3 or more to see seed-to-seed variation)")
    for s in strategies:
        if plan_settings(s)["strategy"] != "auto":  # auto: the candidates the data calls for, chosen on val
            get_strategy(resolve_config({**settings, **plan_settings(s)}))


def plan_settings(name: str) -> dict:
    """A compared line's settings: ``strategy``, or ``strategy@head`` (e.g. ``finetune@ctc``) where a task has
    several heads."""
    strategy, _, head = name.partition("@")
    return {"strategy": strategy, **({"head": head} if head else {})}


def no_transfer_row(task, data: LabelledData, name: str, x_train, x_eval, seconds: float) -> dict[str, Any]:
    """The modality's classic no-transfer line (TF-IDF for text, MFCC statistics for audio) + logistic regression."""
    from sklearn.linear_model import LogisticRegression  # heavy: loaded on first use

    t0 = time.time()
    tr, ev = data.splits_["train"], data.splits_[data.eval_split]
    clf = LogisticRegression(C=10, max_iter=2000, class_weight="balanced").fit(x_train, tr.labels)
    pred = clf.predict(x_eval)
    m = task.metrics(np.eye(len(data.classes_))[pred], ev, data.classes_)
    row: dict[str, Any] = {"strategy": f"{name} + logreg (no transfer)"}
    for k in task.compare_metrics:
        row.update({k: [m[k]], f"{k}_mean": m[k], f"{k}_std": 0.0})
    row.update(seconds_mean=seconds + time.time() - t0, runs=[],
               interval=crossed_interval((pred == np.asarray(ev.labels)).astype(float)[None]))
    return row


def compare_shots(data: str | Path | LabelledData, strategies: list[str], shots: list[int], seeds: int = 3,
                  output: str | Path = "runs", name: str | None = None, **settings) -> dict[str, Any]:
    """:func:`compare` at each number of training examples per class, on one evaluation split; writes
    ``sweep.json`` and a report with the headline metric against shots, a line per strategy.

    Example:
        >>> compare_shots("sms.tsv", ["linear-probe", "contrastive"], shots=[8, 16, 64], backbone="packaged:minilm")
    """
    if not shots or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shots):
        raise ConfigError(f"shots={shots!r} is not a list of counts", "whole numbers ≥ 1, e.g. --shots 8,16,64")
    path = data if isinstance(data, (str, Path)) else data.location  # each count draws its own training subset
    base = Path(output) / (name or f"shots-{Path(path).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    if base.exists():
        raise ConfigError(f"Comparison folder {base} already exists", "a new comparison name", "Choose another --name")
    results = {n: compare(path, strategies, seeds, output=base, name=f"shots-{n}", **{**settings, "shots": n})
               for n in sorted(set(shots))}
    first = next(iter(results.values()))
    lines: dict[str, list[dict]] = {}
    for n, result in results.items():
        for r in result["rows"]:
            iv = r.get("interval") or {}
            lines.setdefault(r["strategy"], []).append(
                {"shots": n, "mean": r[f"{result['metrics'][0]}_mean"], "std": r[f"{result['metrics'][0]}_std"],
                 "low": iv.get("low"), "high": iv.get("high"), "seconds": r["seconds_mean"],
                 **({"too_few": iv["too_few"]} if iv.get("too_few") else {})})
    sweep = {"data": str(path), "backbone": first["backbone"], "seeds": seeds, "split": first["split"],
             "n_eval": first["n_eval"], "metric": first["metrics"][0], "shots": sorted(results), "lines": lines,
             "comparisons": {n: r["path"] for n, r in results.items()}, "path": str(base)}
    if _dist.is_main():
        write_json(base / "sweep.json", sweep)
        write_sweep_report(base, sweep)
    return sweep
