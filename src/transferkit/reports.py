"""Self-contained HTML reports (plots embedded, no remote resources) for runs and comparisons: a run's page is
assembled from its task's, modality's and adaptation's sections (it sits above them all)."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from . import _runfolder as rf
from .adaptation import report_sections as adaptation_sections
from .evaluation import gain_label, gain_text, gained_metrics, interval_text, mcnemar_text, mean_std, plots
from .modalities import get_modality
from .tasks import get_task

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.3rem .7rem;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}.warn{background:#fdecea;border-left:4px solid #c0392b;padding:.6rem 1rem;margin:.5rem 0}
.note{background:#eef6fc;border-left:4px solid #2e86c1;padding:.6rem 1rem;margin:.5rem 0}.ok{color:#1e8449}.bad{color:#c0392b}
img.plot{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:.6rem}.cell{width:230px;font-size:.8rem;text-align:center}
.cell img{width:150px;height:150px;object-fit:cover;border-radius:4px}.cell audio{width:220px;height:32px}.cell img.spec{width:220px;height:120px;object-fit:fill}
.cell .text{text-align:left;max-height:9rem;overflow:auto;background:#f6f8fa;padding:.3rem}pre{background:#f6f8fa;padding:.8rem;overflow:auto;font-size:.8rem}
.big{font-size:2rem;font-weight:600}.kpis{display:flex;gap:2.5rem}.kpis div span{display:block;color:#666;font-size:.85rem}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


def write_run_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` for a finished run; returns its path."""
    run_dir = Path(run_dir)
    m = json.loads((run_dir / rf.METRICS).read_text())
    meta = json.loads((run_dir / rf.MODEL_META).read_text())
    history = []
    if (run_dir / rf.HISTORY).is_file():
        with open(run_dir / rf.HISTORY) as fh:
            history = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    bad = (run_dir / rf.BAD_FILES).read_text().splitlines() if (run_dir / rf.BAD_FILES).is_file() else []
    config = (run_dir / rf.CONFIG).read_text() if (run_dir / rf.CONFIG).is_file() else ""
    task, modality = get_task(meta.get("task", "classify"))(), get_modality(meta.get("modality", "image"))
    body = [f"<h1>{html.escape(run_dir.name)}</h1>",
            f"<p class=sub>{html.escape(task.name)} · {html.escape(modality.name)} · "
            f"{html.escape(m.get('strategy', ''))} · {html.escape(meta.get('backbone_name', ''))} · "
            f"{len(meta['labels'])} {task.labels_are} · {m.get('n_train', '?')} training items · evaluated on "
            f"<b>{html.escape(m['split'])}</b> ({m['n']} items)</p>",
            ]
    body += _auto_section(m.get("auto"))
    body += adaptation_sections(run_dir, m, meta["labels"], history)  # the target first: what the run was adapted for
    body += task.report_sections(run_dir, m, meta, modality)
    if history:
        body += ["<h2>Learning curves</h2>", plots.img(plots.learning_curves(history), "learning curves")]
    if bad:
        body += [f"<h2>Skipped inputs ({len(bad)})</h2><pre>{html.escape(chr(10).join(bad[:200]))}</pre>"]
    body += ["<h2>Resolved config</h2>", f"<pre>{html.escape(config)}</pre>"]
    out = run_dir / rf.REPORT
    rf.atomic_write(out, lambda p: p.write_text(_page(run_dir.name, "".join(body)), encoding="utf-8"))
    return out


def _auto_section(auto: dict | None) -> list[str]:
    """``--strategy auto`` / ``--adapt auto``: every candidate with its score and time, and which was kept and why."""
    if not auto:
        return []

    def cell(value, fmt: str) -> str:
        return "" if value is None else fmt.format(value)

    key = auto.get("choosing", "strategy")
    rows = "".join(f"<tr><td>{html.escape(c[key])}</td><td>{html.escape(c['status'])}</td>"
                   f"<td>{cell(c.get('val'), '{:.4f}')}</td><td>{cell(c.get('seconds'), '{:.0f} s')}</td>"
                   f"<td>{html.escape(c.get('why', ''))}</td></tr>" for c in auto["candidates"])
    title = "Strategy auto" if key == "strategy" else "Adaptation auto"
    return [f"<h2>{title}: {html.escape(auto['kept'])} kept</h2><p class=note>{html.escape(auto['why'])}. "
            f"{html.escape(auto['selection'])}; budget {auto['budget']:.0f} s.</p><table><tr><th>candidate</th>"
            f"<th>status</th><th>{html.escape(auto['metric'])}</th><th>time</th><th></th></tr>{rows}</table>"]


def write_compare_report(out_dir: str | Path, result: dict) -> Path:
    """Write ``report.html`` for a comparison (``compare.json`` content)."""
    out_dir = Path(out_dir)
    rows = result["rows"]
    metrics = result.get("metrics", ["accuracy", "macro_f1"])
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    baseline = result.get("baseline", "scratch")
    gained = gained_metrics(result)
    gains_head = "".join(f"<th>{html.escape(gain_label(result, m))} over {html.escape(baseline)} [95% CI]</th>"
                         for m in gained)
    tr = []
    for r in rows:
        vals = "".join(f"<td>{mean_std(r, m)}</td>" for m in metrics)
        gains = "".join(f"<td>{gain_text((r.get('gains') or {}).get(m))}</td>" for m in gained)
        tr.append(f"<tr><td>{html.escape(r['strategy'])}</td>{vals}<td>{r['seconds_mean']:.0f} s</td>{gains}"
                  f"<td>{mcnemar_text(r.get('gain'))}</td></tr>")
    warnings = "".join(f"<div class=warn>{html.escape(w)}</div>" for w in result["warnings"])
    body = [f"<h1>{html.escape(result.get('title', 'Strategy comparison'))}</h1><p class=sub>{html.escape(result['data'])} · "
            f"{html.escape(result['backbone'])} · {result['seeds']} seed(s) · same split for all · "
            f"evaluated on <b>{html.escape(result['split'])}</b> ({result['n_eval']} items)</p>", warnings,
            f"<p class=note>Target: {html.escape(result['target'])}. Oracle: {html.escape(result['oracle'])}.</p>"
            if result.get("oracle") else "",
            f"<p class=note>Without target labels: <b>{html.escape(result['recommended']['strategy'])}</b>, by "
            f"{html.escape(result['recommended']['criterion'])}.</p>" if result.get("recommended") else "",
            f"<h2>Results</h2><table><tr><th>strategy</th>{head}<th>time / run</th>{gains_head}"
            f"<th>McNemar p</th></tr>{''.join(tr)}</table>",
            "<p class=note>Gains are paired by seed and by evaluation item. The 95% interval accounts for both "
            "sources of variation, seeds and which items are in the evaluation split (a crossed random-effects "
            "model with Satterthwaite's degrees of freedom; macro-F1 through jackknife pseudo-values). McNemar's "
            "exact test on the right/wrong outcomes is pooled over seeds. NEGATIVE TRANSFER is flagged when the "
            "whole interval is below 0.</p>",
            plots.img(plots.gain_intervals(rows, metrics, baseline), f"gain over {baseline} with 95% intervals"),
            plots.img(plots.strategy_bars(rows, metrics[0]), f"{metrics[0]} by strategy"), "<h2>Runs</h2><ul>"]
    for r in rows:
        for p in r["runs"]:
            rel = Path(p).relative_to(out_dir) if Path(p).is_relative_to(out_dir) else Path(p)
            body.append(f"<li><a href='{html.escape(str(rel))}/report.html'>{html.escape(str(rel))}</a></li>")
    body.append("</ul>")
    out = out_dir / rf.REPORT
    rf.atomic_write(out, lambda p: p.write_text(_page("comparison", "".join(body)), encoding="utf-8"))
    return out


def write_sweep_report(out_dir: str | Path, sweep: dict) -> Path:
    """``report.html`` of a shots sweep: one table (the metric per strategy and shot count) and one plot."""
    out_dir = Path(out_dir)
    head = "".join(f"<th>{n} per class</th>" for n in sweep["shots"])
    rows = []
    for name, points in sweep["lines"].items():
        by = {p["shots"]: p for p in points}
        cells = "".join(f"<td>{interval_text(by.get(n))}</td>" for n in sweep["shots"])
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    links = "".join(f"<li><a href='shots-{n}/report.html'>{n} per class</a></li>" for n in sweep["shots"])
    body = (f"<h1>{html.escape(sweep['metric'])} against training examples per class</h1><p class=sub>"
            f"{html.escape(sweep['data'])} · {html.escape(sweep['backbone'])} · {sweep['seeds']} seed(s) · evaluated "
            f"on <b>{html.escape(sweep['split'])}</b> ({sweep['n_eval']} items), the same split at every count</p>"
            f"<table><tr><th>strategy</th>{head}</tr>{''.join(rows)}</table><p class=note>Mean over seeds with its "
            f"95% interval over seeds × evaluation items.</p>{plots.img(plots.shots_curve(sweep), 'metric against shots')}"
            f"<h2>Comparisons</h2><ul>{links}</ul>")
    path = out_dir / rf.REPORT
    path.write_text(_page("shots sweep", body), encoding="utf-8")
    return path


