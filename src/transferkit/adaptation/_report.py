"""The adaptation part of a run report: source against target accuracy, the feature map of both domains
before and after adaptation (coloured by domain and by class), and the per-class target accuracy."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..evaluation import kpis, plots

MAP_FILE = "adaptation_map.npz"  # the map's samples of both domains, before and after adaptation (t-SNE)


def sections(run_dir: Path, metrics: dict, labels: list[str], history: list[dict]) -> list[str]:
    """The report's adaptation sections, first on the page (none for a run without ``--target``); then the source's
    heading, under which the task's own sections follow (``history``: history.csv's rows, read by the caller)."""
    if not metrics.get("adaptation"):
        return []
    a = metrics["adaptation"]
    target = a.get("accuracy")
    kpi = kpis([(f"source {metrics['split']} accuracy", f"{metrics['accuracy']:.1%}"),
                ("target accuracy", "—" if target is None else f"{target:.1%}"), ("method", a["method"])])
    notes = [f"Target {html.escape(a['target'])}: {a['n_target']} inputs, {a['n_scored']} with a source class label "
             f"(read only to score). Model selection: {html.escape(a['selection'])}."]
    if a.get("unknown_classes"):
        notes.append("Target classes the source does not have (adapted to, not scored): " + html.escape(
            ", ".join(f"{k} ({v})" for k, v in a["unknown_classes"].items())) + ".")
    warn = (f"<div class=warn>{a['shared_with_source']} target input(s) are identical to source inputs: the "
            "target is not wholly unseen.</div>" if a.get("shared_with_source") else "")
    body = ["<h2>Domain adaptation</h2>", kpi, warn, *(f"<p class=note>{n}</p>" for n in notes)]
    path = run_dir / MAP_FILE
    if path.is_file():
        body.append(plots.img(feature_map(dict(np.load(path)), labels),
                               "source and target features before and after adaptation (t-SNE)"))
        body.append("<p class=note>t-SNE of up to 300 source training and 300 target inputs. Before: the backbone "
                    "as loaded. After: the run's own features (feature-level methods: their mapped features). "
                    "Unlabelled target inputs are grey in the class panels.</p>")
    curves = label_free_curves(history)
    if curves:
        body.append(plots.img(curves, "label-free target scores by epoch"))
        body.append("<p class=note>Each trained epoch scored on the target without its labels: Deep Embedded "
                    "Validation (an estimate of the target loss, lower is better) and soft neighbourhood density "
                    "(higher is better); the dashed line is the epoch kept. Target accuracy, where the target has "
                    "labels, is in the learning curves below; no choice reads it.</p>")
    if a.get("criterion_predicts_loss"):
        body.append(f"<div class=warn>The label-free criterion predicts that {html.escape(a['method'])} loses "
                    f"accuracy on the target: its predictions' soft neighbourhood density {a['snd']:.4f} is below "
                    f"the source-only probe's {a['snd_source_only']:.4f}.</div>")
    if a.get("per_class"):
        rows = "".join(f"<tr><td>{html.escape(c)}</td><td>{v['accuracy']:.1%}</td><td>{v['n']}</td></tr>"
                       for c, v in sorted(a["per_class"].items(), key=lambda kv: kv[1]["accuracy"]))
        body.append(f"<h3>Target accuracy per class (weakest first)</h3><table><tr><th>class</th><th>accuracy</th>"
                    f"<th>inputs</th></tr>{rows}</table>")
    return body + [f"<h2>Source ({html.escape(metrics['split'])} split)</h2>"]


def feature_map(m: dict, labels: list[str]) -> str:
    plt = plots.figure()
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    domain, label = m["domain"], m["label"]
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for col, stage in enumerate(("before", "after")):
        xy = m[stage]
        ax = axes[0, col]
        for d, (name, colour, marker) in enumerate((("source", "#2e86c1", "o"), ("target", "#e67e22", "^"))):
            sel = domain == d
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, c=colour, marker=marker, alpha=0.7, label=name)
        ax.set_title(f"{stage} adaptation: by domain")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        for d, marker in ((0, "o"), (1, "^")):
            sel = (domain == d) & (label < 0)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, c="#bbbbbb", marker=marker)
            for c in range(len(labels)):
                sel = (domain == d) & (label == c)
                ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(c % cmap.N), marker=marker, alpha=0.8,
                           label=labels[c] if d == 0 else None)
        ax.set_title(f"{stage} adaptation: by class (o source, ^ target)")
        if col == 1:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return plots.to_png64(fig)


def save_map(path: Path, before, after, source_labels, target_labels, seed: int) -> None:
    """The map's samples of both domains before and after adaptation, laid out in 2-D (t-SNE) for the report."""
    out = {"domain": np.r_[np.zeros(len(source_labels), int), np.ones(len(target_labels), int)],
           "label": np.r_[source_labels, target_labels],
           "before": tsne(np.vstack(before), seed), "after": tsne(np.vstack(after), seed)}
    np.savez_compressed(path, **out)


def tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA  # heavy: loaded on first use
    from sklearn.manifold import TSNE

    x = np.asarray(x, np.float64)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    return TSNE(2, perplexity=min(30.0, max(2.0, (len(x) - 1) / 3)), init="pca", random_state=seed).fit_transform(x).astype(np.float32)


def label_free_curves(history: list[dict]) -> str | None:
    """DEV and SND of the target predictions by epoch (the run's history rows), the kept epoch marked; None
    without them."""
    rows = [r for r in history if "target_snd" in r]
    if not rows:
        return None
    plt = plots.figure()
    panels = [(k, label) for k, label in (("target_dev", "DEV: estimated target loss"),
                                          ("target_snd", "SND of target predictions")) if k in rows[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    epochs = [int(r["epoch"]) for r in rows]
    kept = [int(r["epoch"]) for r in rows if r.get("kept")]
    for (key, label), ax in zip(panels, axes[0]):
        ax.plot(epochs, [r[key] for r in rows], "o-", color="#e67e22")
        for k in kept:
            ax.axvline(k, ls="--", color="#555555")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("label-free target scores")
    return plots.to_png64(fig)
