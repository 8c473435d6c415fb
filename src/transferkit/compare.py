"""Compare strategies on one split with paired seeds, and measure the gain over scratch."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._runfolder import write_json
from .config import resolve_config
from .data import LabelledData
from .modalities import data_for, modality_of
from .tasks import get_task
from .training import fit

log = logging.getLogger("transferkit")


def paired_gain(transfer: list[float], scratch: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean paired difference (transfer − scratch) with a t-interval over seeds (none for one seed)."""
    d = np.asarray(transfer, float) - np.asarray(scratch, float)
    out: dict[str, Any] = {"mean": float(d.mean()), "low": None, "high": None, "n": int(len(d))}
    if len(d) >= 2:
        from scipy import stats

        half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        out["low"], out["high"] = float(d.mean() - half), float(d.mean() + half)
    return out


def transfer_warnings(rows: list[dict]) -> list[str]:
    """NEGATIVE TRANSFER when a transfer strategy is worse than scratch beyond noise; a milder note when unclear."""
    msgs = []
    for r in rows:
        g = r.get("gain")
        if not g:
            continue
        hi = g["high"] if g["high"] is not None else g["mean"]
        lo = g["low"] if g["low"] is not None else g["mean"]
        if hi < 0 or (g["n"] == 1 and g["mean"] <= 0):
            msgs.append(f"NEGATIVE TRANSFER: {r['strategy']} is {-g['mean']:.1%} less accurate than training from "
                        f"scratch. The pretrained features hurt on this data: try another backbone, more fine-tuning "
                        f"(finetune, lp-ft), or check that the inputs match the backbone's domain.")
        elif lo <= 0:
            msgs.append(f"No clear gain: {r['strategy']} vs scratch is {g['mean']:+.1%}, and the 95% interval "
                        f"[{lo:+.1%}, {hi:+.1%}] includes 0. Use more seeds or more evaluation data to tell.")
    return msgs


def compare(data: LabelledData | str, strategies: list[str], seeds: int = 3, output: str | Path = "runs",
            name: str | None = None, first_seed: int = 0, **settings) -> dict[str, Any]:
    """Train every strategy with every seed on the same split; write ``compare.json`` and a report.

    Returns:
        The comparison: rows per strategy (mean ± std of accuracy and macro-F1, time, gain over
        scratch with its interval), warnings, and the run folders.
    """
    if isinstance(data, (str, Path)):
        data = data_for(resolve_config({**settings, "data": str(data)}))
    settings.pop("data", None)
    data.setup()  # scan once: every run shares the split
    out_dir = Path(output) / (name or f"compare-{Path(data.location).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    out_dir.mkdir(parents=True, exist_ok=False)
    results: dict[str, list] = {s: [] for s in strategies}
    for seed in range(first_seed, first_seed + seeds):
        for s in strategies:
            t0 = time.time()
            log.info("compare: %s, seed %d", s, seed)
            run = fit(data, strategy=s, seed=seed, output=str(out_dir / "runs"), name=f"{s.replace(':', '')}-seed{seed}",
                      **settings)
            results[s].append((run, time.time() - t0))
    task = get_task(settings.get("task", "classify"))
    metric_names = task.compare_metrics
    headline = metric_names[0]
    rows = []
    scratch = [r.metrics[headline] for r, _ in results.get("scratch", [])]
    for s, runs in results.items():
        row: dict[str, Any] = {"strategy": s}
        for m in metric_names:
            vals = [r.metrics[m] for r, _ in runs]
            row.update({m: vals, f"{m}_mean": float(np.mean(vals)), f"{m}_std": float(np.std(vals))})
        row.update(seconds_mean=float(np.mean([t for _, t in runs])), runs=[str(r.path) for r, _ in runs])
        if scratch and s != "scratch":
            row["gain"] = paired_gain(row[headline], scratch)
        rows.append(row)
    baseline = modality_of(data).baseline_features(data.splits_["train"], data.splits_[data.eval_split])
    if baseline is not None:
        rows.append(no_transfer_row(task, data, *baseline))
    first = next(iter(results.values()))[0][0]
    result = {"data": data.location, "backbone": first.config.backbone,
              "seeds": seeds, "split": first.metrics["split"], "n_eval": first.metrics["n"], "rows": rows,
              "warnings": transfer_warnings(rows)}
    for w in result["warnings"]:
        log.warning(w)
    write_json(out_dir / "compare.json", result)
    from .evaluation.report import write_compare_report

    write_compare_report(out_dir, result)
    result["path"] = str(out_dir)
    return result


def no_transfer_row(task, data: LabelledData, name: str, x_train, x_eval, seconds: float) -> dict[str, Any]:
    """The modality's classic no-transfer line (TF-IDF for text, MFCC statistics for audio) + logistic regression."""
    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    tr, ev = data.splits_["train"], data.splits_[data.eval_split]
    clf = LogisticRegression(C=10, max_iter=2000, class_weight="balanced").fit(x_train, tr.labels)
    scores = np.eye(len(data.classes_))[clf.predict(x_eval)]
    m = task.rescore(scores, ev.labels, data.classes_)
    row: dict[str, Any] = {"strategy": f"{name} + logreg (no transfer)"}
    for k in task.compare_metrics:
        row.update({k: [m[k]], f"{k}_mean": m[k], f"{k}_std": 0.0})
    row.update(seconds_mean=seconds + time.time() - t0, runs=[])
    return row
