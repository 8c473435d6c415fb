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
from .inputs import data_from_config
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
        data = data_from_config(resolve_config({**settings, "data": str(data)}))
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
    rows = []
    scratch = [r.metrics["accuracy"] for r, _ in results.get("scratch", [])]
    for s, runs in results.items():
        acc = [r.metrics["accuracy"] for r, _ in runs]
        f1 = [r.metrics["macro_f1"] for r, _ in runs]
        row = {"strategy": s, "accuracy": acc, "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
               "macro_f1_mean": float(np.mean(f1)), "macro_f1_std": float(np.std(f1)),
               "seconds_mean": float(np.mean([t for _, t in runs])), "runs": [str(r.path) for r, _ in runs]}
        if scratch and s != "scratch":
            row["gain"] = paired_gain(acc, scratch)
        rows.append(row)
    if data.kind == "text":
        rows.append(tfidf_baseline(data))
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


def tfidf_baseline(data: LabelledData) -> dict[str, Any]:
    """The classic no-transfer text baseline: TF-IDF (word 1–2-grams) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from .evaluation import classification_metrics

    t0 = time.time()
    tr, ev = data.splits_["train"], data.splits_[data.eval_split]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    clf = LogisticRegression(C=10, max_iter=2000, class_weight="balanced").fit(vec.fit_transform(tr.inputs), tr.labels)
    m = classification_metrics(ev.labels, clf.predict(vec.transform(ev.inputs)), data.classes_)
    return {"strategy": "tfidf+logreg (no transfer)", "accuracy": [m["accuracy"]], "accuracy_mean": m["accuracy"],
            "accuracy_std": 0.0, "macro_f1_mean": m["macro_f1"], "macro_f1_std": 0.0,
            "seconds_mean": time.time() - t0, "runs": []}
