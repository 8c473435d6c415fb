"""How gains, intervals and tests are written in tables and reports."""

from __future__ import annotations

import html


def gain_label(result: dict, metric: str) -> str:
    """``accuracy gain``; ``wer reduction`` for an error rate (its gain is how much lower it is)."""
    return f"{metric} {'reduction' if metric in result.get('lower_is_better', ()) else 'gain'}"


def gain_text(g: dict | None) -> str:
    """``+21.3% [+15.2%, +27.4%]`` (percentage points) for a gain with its interval."""
    if not g:
        return ""
    if g.get("low") is None:
        return f"{g['mean']:+.1%} (no interval: too few items)"
    return f"{g['mean']:+.1%} [{g['low']:+.1%}, {g['high']:+.1%}]"


def mcnemar_text(g: dict | None) -> str:
    test = (g or {}).get("mcnemar")
    return "" if not test else f"{test['pooled']['p']:.2g}"


def gained_metrics(result: dict) -> list[str]:
    """The compared metrics that have a gain column (an adaptation comparison has none for source accuracy)."""
    metrics = result.get("metrics", ["accuracy", "macro_f1"])
    return [m for m in metrics if any(m in (r.get("gains") or {}) for r in result["rows"])] or metrics[:1]


def mean_std(row: dict, metric: str) -> str:
    """``mean ± std`` of a compare row's metric; — where the row has none (an oracle's source accuracy)."""
    m = row.get(metric + "_mean")
    return "—" if m is None or m != m else f"{m:.3f} ± {row[metric + '_std']:.3f}"


def interval_text(p: dict | None) -> str:
    if not p:
        return "—"
    if p.get("low") is None:
        return f"{p['mean']:.3f}"
    return f"{p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"


def kpis(pairs, seconds: float | None = None) -> str:
    """A report's row of headline figures: (label, value) pairs, then the run's wall time when given."""
    pairs = list(pairs) + ([("wall time", f"{seconds:.0f} s")] if seconds is not None else [])
    cells = "".join(f"<div><span>{html.escape(str(k))}</span><div class=big>{html.escape(str(v))}</div></div>"
                    for k, v in pairs)
    return f"<div class=kpis>{cells}</div>"
