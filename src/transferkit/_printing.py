"""What the command prints: tables of metrics, comparisons and sweeps (rich)."""

from __future__ import annotations

from rich.table import Table


def print_metrics(out, m: dict) -> None:
    """A run's metrics on its evaluation split: per-class table, accuracy."""
    t = Table(title=f"{m.get('strategy', '')} on {m['split']} ({m['n']} items)")
    for col in ("class", "precision", "recall", "F1", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for name, r in m["per_class"].items():
        t.add_row(name, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    t.add_row("[bold]macro[/]", f"{m['macro_precision']:.3f}", f"{m['macro_recall']:.3f}",
              f"[bold]{m['macro_f1']:.3f}[/]", str(m["n"]))
    out.print(t)
    out.print(f"accuracy [bold]{m['accuracy']:.1%}[/]" + (f"  ({m['seconds']:.1f} s)" if "seconds" in m else ""))


def print_comparison(out, result: dict) -> None:
    """A comparison: every metric per strategy, time, gain over scratch with its interval, McNemar."""
    from .evaluation.report import gain_text, mcnemar_text

    metrics = result["metrics"]
    t = Table(title=f"{result['backbone']} · {result['seeds']} seed(s) · {result['split']} ({result['n_eval']} items)")
    for col in ("strategy", *metrics, "time/run", *[f"{m} gain [95% CI]" for m in metrics], "McNemar p"):
        t.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=col == "strategy")
    for r in result["rows"]:
        gains = r.get("gains") or {}
        t.add_row(r["strategy"], *[f"{r[m + '_mean']:.3f} ± {r[m + '_std']:.3f}" for m in metrics],
                  f"{r['seconds_mean']:.0f} s", *[gain_text(gains.get(m)) for m in metrics], mcnemar_text(r.get("gain")))
    out.print(t)
    for w in result["warnings"]:
        out.print(f"[bold red]{w}[/]")
    out.print(f"comparison: [bold]{result['path']}[/] (compare.json, report.html)")


def print_sweep(out, sweep: dict) -> None:
    """A shots sweep: the metric per strategy and count, with 95% intervals."""
    from .evaluation.report import interval_text

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
    out.print(f"sweep: [bold]{sweep['path']}[/] (sweep.json, report.html)")
