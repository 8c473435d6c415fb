"""Classification: one label per input; cross-entropy; accuracy and per-class F1; a logistic-regression probe."""

from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import _runfolder as rf
from ..config import Option
from ..evaluation import accuracy_values, classification_metrics, format_metrics, kpis, macro_f1_values, plots
from ..features import fit_logistic
from ..heads import TransferModel, build_head
from ._base import Task, register_task


@register_task
class Classification(Task):
    name = "classify"
    description = "one label per input (folders of classes, or a table's label column)"
    options = (
        Option("class_weights", default="none", help="none | auto (inverse class frequency in the loss and the probe)",
               choices=("none", "auto")),
        Option("label_smoothing", float, 0.0, low=0.0, high=0.999, wanted="a label smoothing in [0, 1)",
               search=("float", 0.0, 0.2)),
    )
    compare_metrics = ("accuracy", "macro_f1")
    paired_test_metric = "accuracy"
    adaptable = True
    classic_baseline = True

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        self.weight = weight
        self.label_smoothing = label_smoothing

    @classmethod
    def auto_candidates(cls, modality, items) -> tuple[str, ...]:
        return modality.auto_candidates(items)  # which strategy wins depends on the data: tried, chosen on val

    @classmethod
    def for_run(cls, cfg, data, backbone=None, data_config=None) -> "Classification":
        weight = None
        if cfg.class_weights == "auto":  # inverse class frequency, mean 1
            counts = np.bincount(data.splits_["train"].labels, minlength=len(data.classes_)).astype(float)
            weight = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        return cls(weight, cfg.label_smoothing)

    def build_model(self, backbone, spec) -> TransferModel:
        return TransferModel(backbone, build_head(spec["head"], backbone.num_features, len(spec["labels"])))

    def loss(self, outputs, targets) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(outputs.device)
        return F.cross_entropy(outputs.float(), targets, weight=weight, label_smoothing=self.label_smoothing)

    def step_stats(self, outputs, targets):
        return {"train_acc": (outputs.detach().argmax(1) == targets).sum()}

    @torch.inference_mode()
    def evaluate(self, model, loader, to_device, gather=None) -> dict[str, float]:
        model.eval()
        logits, targets = [], []
        for x, y in loader:
            x, y = to_device(x, y)
            logits.append(model(x).float())
            targets.append(y)
        if gather is not None:  # every process's share of val, each item once
            logits, targets = [gather(torch.cat(logits))], [gather(torch.cat(targets))]
        if not logits or not len(logits[0]):
            return {}
        logits, targets = torch.cat(logits), torch.cat(targets)
        return {"val_loss": F.cross_entropy(logits, targets).item(),
                "val_acc": (logits.argmax(1) == targets).float().mean().item()}

    @classmethod
    def selection_score(cls, row):
        return (row["val_acc"], -row["val_loss"])

    prediction_columns = ("input", "true", "pred", "confidence")

    def metrics(self, outputs: np.ndarray, items, labels) -> dict[str, Any]:
        return classification_metrics(items.labels, np.asarray(outputs).argmax(1), labels)

    def prediction_rows(self, outputs, items, labels) -> list[dict]:
        """One row per input: its label, the predicted one and that prediction's probability."""
        probs = torch.from_numpy(np.asarray(outputs)).float().softmax(1).numpy()
        return [dict(zip(self.prediction_columns, (inp, labels[t], labels[p], f"{pr[p]:.4f}")))
                for inp, t, p, pr in zip(items.inputs, items.labels, probs.argmax(1), probs)]

    @classmethod
    def item_values(cls, run_dir, labels):
        """Right/wrong per item (accuracy) and macro-F1's jackknife pseudo-values, from predictions.csv."""
        index = {name: i for i, name in enumerate(labels)}
        with open(Path(run_dir) / rf.PREDICTIONS, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        y_true = np.array([index[r["true"]] for r in rows])
        y_pred = np.array([index[r["pred"]] for r in rows])
        return {"accuracy": accuracy_values(y_true, y_pred),
                "macro_f1": macro_f1_values(y_true, y_pred, len(labels))}

    @classmethod
    def summary(cls, metrics):
        return format_metrics(metrics)

    def decode(self, outputs, labels, topk=3):
        probs = torch.from_numpy(np.asarray(outputs)).float().softmax(1).numpy()
        k = min(topk, len(labels))
        out = []
        for p in probs:
            order = np.argsort(-p)[:k]
            out.append({"label": labels[order[0]], "probability": float(p[order[0]]),
                        "topk": [(labels[i], float(p[i])) for i in order]})
        return out

    def fit_probe(self, model, feats, targets, cfg):
        """Fit the head on frozen features: logistic regression for a linear head, a short Adam run for an MLP."""
        head = model.head
        if len(head) == 1:
            w, b, c = fit_logistic(feats, targets, head[0].out_features, cfg.class_weights, cfg.seed)
            with torch.no_grad():
                head[0].weight.copy_(torch.from_numpy(w))
                head[0].bias.copy_(torch.from_numpy(b))
            return {"head": "logistic regression", "C": c}
        x, t = torch.from_numpy(feats), torch.from_numpy(targets).long()
        mu, sd = x.mean(0), x.std(0) + 1e-6
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
        head.train()
        steps = 300
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(head((x - mu) / sd), t).backward()
            opt.step()
        with torch.no_grad():  # fold the standardisation into the first layer
            first = head[0]
            first.bias.sub_((first.weight * (mu / sd)).sum(1))
            first.weight.div_(sd)
        head.eval()
        return {"head": "mlp trained on cached features", "steps": steps}

    def report_sections(self, run_dir, m, meta, modality):
        return [kpis([("accuracy", f"{m['accuracy']:.1%}"), ("macro-F1", f"{m['macro_f1']:.3f}")], m.get("seconds", 0)),
                f"<p class=note>Model selection: {html.escape(str(m.get('selection', '')))}.</p>",
                "<h2>Per-class metrics</h2>", _metric_table(m),
                plots.img(plots.per_class_f1(m["per_class"]), "per-class F1"),
                "<h2>Confusion matrix</h2>",
                plots.img(plots.confusion_heatmap(m["confusion_matrix"], m["labels"]), "confusion matrix"),
                "<h2>Mistakes</h2>", _mistakes(run_dir, modality)]


def _metric_table(m: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
                   f"<td>{v['f1']:.3f}</td><td>{v['support']}</td></tr>" for k, v in m["per_class"].items())
    return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            f"{rows}<tr><th>macro</th><th>{m['macro_precision']:.3f}</th><th>{m['macro_recall']:.3f}</th>"
            f"<th>{m['macro_f1']:.3f}</th><th>{m['n']}</th></tr></table>")


def _mistakes(run_dir: Path, modality, limit: int = 16) -> str:
    """The most confident mistakes, each shown by the modality (thumbnail, text, spectrogram + player)."""
    path = run_dir / rf.PREDICTIONS
    if not path.is_file():
        return ""
    with open(path, encoding="utf-8") as fh:
        wrong = [r for r in csv.DictReader(fh) if r["true"] != r["pred"]]
    if not wrong:
        return "<p class=ok>No mistakes on this split.</p>"
    wrong.sort(key=lambda r: -float(r["confidence"]))
    cells = [f"<div class=cell>{modality.preview(r['input'])}<br>true <b>{html.escape(r['true'])}</b><br>"
             f"predicted <b class=bad>{html.escape(r['pred'])}</b> {float(r['confidence']):.0%}<br>"
             f"<small>{html.escape(Path(r['input']).name[:80])}</small></div>" for r in wrong[:limit]]
    return f"<p>{len(wrong)} mistake(s); the most confident first.</p><div class=grid>{''.join(cells)}</div>"

