"""Matplotlib figures for reports, returned as base64 PNG (reports are single offline files)."""

from __future__ import annotations

import base64
import html
import io

import numpy as np


def figure():
    import matplotlib  # heavy: loaded on first use

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: loaded on first use

    plt.rcParams["text.parse_math"] = False  # labels are data: a "$" in a class name is a dollar sign
    return plt


def to_png64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    figure().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def learning_curves(history: list[dict], title: str = "") -> str | None:
    if not history:
        return None
    plt = figure()
    logged = {k for r in history for k in r}
    panels = [(k, label) for k, label in (("loss", "loss"), ("acc", "accuracy"), ("map", "mAP@[.5:.95]"),
                                          ("wer", "WER (epoch 0: as loaded)"))  # by what the task logs
              if f"train_{k}" in logged or f"val_{k}" in logged]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for (key, label), ax in zip(panels, axes[0]):
        for side in ("train", "val", "target"):  # target: a domain-adaptation run's, scored with its labels
            rows = [r for r in history if f"{side}_{key}" in r]
            if rows:
                ax.plot([r["epoch"] for r in rows], [r[f"{side}_{key}"] for r in rows], "o-", label=side)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "learning curves")
    return to_png64(fig)


def confusion_heatmap(cm: list[list[int]], labels: list[str]) -> str:
    plt = figure()
    cm = np.asarray(cm)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.55 * n + 2), max(3, 0.5 * n + 1.5)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, _count(cm[i, j], cm.max()), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (colour: row share)")
    return to_png64(fig)


def _count(v, top) -> str:
    """A cell's count, short enough for its cell: thousands or millions where counts are pixels."""
    if top >= 10**7:
        return f"{v / 1e6:.1f}M"
    if top >= 10**5:
        return f"{v / 1e3:.0f}k"
    return str(v)


def per_class_f1(per_class: dict[str, dict]) -> str:
    return per_class_bars({k: v["f1"] for k, v in per_class.items()}, "F1")


def per_class_bars(values: dict[str, float | None], metric: str) -> str:
    """One bar per class (red below 0.7); a class without a value (never present) is left empty."""
    plt = figure()
    names = list(values)
    v = [values[k] if values[k] is not None else 0.0 for k in names]
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(names) + 2), 3))
    bars = ax.bar(range(len(names)), v, color=["#c0392b" if x < 0.7 else "#2e86c1" for x in v])
    ax.bar_label(bars, [f"{values[k]:.2f}" if values[k] is not None else "–" for k in names], fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(metric)
    ax.set_title(f"per-class {metric}")
    return to_png64(fig)


def strategy_bars(rows: list[dict], metric: str = "accuracy") -> str:
    """The headline metric's mean ± std per strategy (comparison report)."""
    plt = figure()
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 1), 3.2))
    names = [r["strategy"] for r in rows]
    means = [r[f"{metric}_mean"] for r in rows]
    stds = [r[f"{metric}_std"] for r in rows]
    colors = ["#7f8c8d" if r.get("baseline") else "#2e86c1" for r in rows]
    bars = ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors)
    ax.bar_label(bars, [f"{m:.1%}" for m in means], fontsize=8, padding=3)
    ax.set_xticks(range(len(rows)), names, rotation=30 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by strategy (mean ± std over seeds; grey = the baseline)")
    return to_png64(fig)


def shots_curve(sweep: dict) -> str:
    """The headline metric against training examples per class, a line per strategy (95% intervals)."""
    plt = figure()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, points in sweep["lines"].items():
        x = [p["shots"] for p in points]
        y = [p["mean"] for p in points]
        lo = [p["mean"] - p["low"] if p["low"] is not None else 0 for p in points]
        hi = [p["high"] - p["mean"] if p["high"] is not None else 0 for p in points]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o-" if "no transfer" not in name else "s--", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sweep["shots"], [str(n) for n in sweep["shots"]])
    ax.set_xlabel("training examples per class")
    ax.set_ylabel(sweep["metric"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep['metric']} against shots (mean, 95% interval over seeds × items)")
    return to_png64(fig)


def img(b64: str | None, alt: str) -> str:
    """An embedded PNG plot (nothing when the plot could not be drawn)."""
    return f'<img class=plot alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def gain_intervals(rows: list[dict], metrics: list[str], baseline: str = "scratch") -> str | None:
    """Gain over the baseline per strategy with its 95% interval (error bars), one panel per metric that has gains."""
    rows = [r for r in rows if r.get("gains")]
    metrics = [m for m in metrics if all(m in r["gains"] for r in rows)]
    if not rows or not metrics:
        return None
    plt = figure()
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.5, 1.3 * len(rows) + 1.5) * len(metrics), 3.2),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        gains = [r["gains"][m] for r in rows]
        means = [g["mean"] for g in gains]
        err = [[g["mean"] - g["low"] if g["low"] is not None else 0 for g in gains],
               [g["high"] - g["mean"] if g["high"] is not None else 0 for g in gains]]
        colors = ["#bbbbbb" if g["low"] is None else "#c0392b" if g["high"] < 0 else "#7f8c8d" if g["low"] <= 0
                  else "#1e8449" for g in gains]
        ax.bar(range(len(rows)), means, yerr=err, capsize=5, color=colors)
        ax.axhline(0, color="#333", lw=0.8)
        ax.set_xticks(range(len(rows)), [r["strategy"] for r in rows], rotation=30 if len(rows) > 4 else 0, ha="right"
                      if len(rows) > 4 else "center")
        ax.set_ylabel(f"{m} gain over {baseline}")
        ax.set_title(f"{m}: gain, 95% interval over seeds × items")
    return to_png64(fig)
