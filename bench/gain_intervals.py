"""Gain intervals of a finished comparison: the seeds-only t-interval next to the seeds × items interval.

    python bench/gain_intervals.py runs/compare-XYZ [--seeds 2]   # recompute on the first N seeds
    python bench/gain_intervals.py --coverage                      # simulated coverage of the 95% interval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def seeds_only(transfer: list[float], scratch: list[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """The t-interval over seeds alone (what compare reported before)."""
    from scipy import stats

    d = np.asarray(transfer, float) - np.asarray(scratch, float)
    if len(d) < 2:
        return float(d.mean()), None, None
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def fmt(mean, low, high) -> str:
    return f"{mean:+.1%}" + ("" if low is None else f" [{low:+.1%}, {high:+.1%}]")


def analyse(folder: Path, seeds: int | None) -> None:
    from transferkit.compare import paired_gains
    from transferkit.tasks import get_task
    from transferkit.training import load_run

    result = json.loads((folder / "compare.json").read_text())
    runs = {r["strategy"]: [load_run(p) for p in r["runs"]][:seeds] for r in result["rows"] if r["runs"]}
    labels = json.loads((Path(runs["scratch"][0].path) / "labels.json").read_text())
    task = get_task(runs["scratch"][0].config.task)()
    k = len(runs["scratch"])
    print(f"{folder.name}: {k} seed(s), {result['n_eval']} evaluation items")
    print("| strategy | metric | gain | seeds-only t-interval | seeds × items interval | McNemar p (pooled) | dominant source |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    from transferkit.evaluation import dominant_source

    for s, rs in runs.items():
        if s == "scratch":
            continue
        gains = paired_gains(task, rs, runs["scratch"], labels)
        for m in task.compare_metrics:
            old = seeds_only([r.metrics[m] for r in rs], [r.metrics[m] for r in runs["scratch"]])
            g = gains[m]
            p = g.get("mcnemar", {}).get("pooled", {}).get("p")
            print(f"| {s} | {m} | {g['mean']:+.1%} | {fmt(*old)} | {fmt(g['mean'], g['low'], g['high'])} | "
                  f"{'' if p is None else f'{p:.2g}'} | {dominant_source(g) if m == task.compare_metrics[0] else ''} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--coverage", action="store_true")
    args = ap.parse_args()
    if args.coverage:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_intervals import _coverage

        print("| seeds | seed-to-seed sd (log-odds) | coverage of the 95% interval (400 simulated comparisons, 300 items) |")
        print("| --- | --- | --- |")
        for k, sd in ((1, 0.0), (2, 0.0), (2, 0.15), (2, 0.3), (5, 0.0), (5, 0.3), (10, 0.3)):
            print(f"| {k} | {sd} | {_coverage(k, sd):.1%} |")
        return
    analyse(Path(args.folder), args.seeds)


if __name__ == "__main__":
    main()
