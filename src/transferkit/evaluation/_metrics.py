"""Pure metric functions on arrays."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro and per-class precision/recall/F1, and the confusion matrix.

    Args:
        y_true, y_pred: integer class indices.
        labels: class names, index → name.

    Returns:
        A JSON-ready dict; ``confusion_matrix[i][j]`` counts true class i predicted as j.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # heavy: loaded on first use

    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    present = s > 0  # macro averages over the classes that occur in this split
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_precision": float(p[present].mean()) if present.any() else 0.0,
        "macro_recall": float(r[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f[present].mean()) if present.any() else 0.0,
        "per_class": {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(s[i])} for i in idx},
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
    }


def format_metrics(m: dict) -> str:
    """A short human summary: accuracy, macro-F1 and the weakest class."""
    worst = min(m["per_class"].items(), key=lambda kv: (kv[1]["f1"] if kv[1]["support"] else 2))
    return (f"accuracy {m['accuracy']:.1%}, macro-F1 {m['macro_f1']:.3f} on {m['n']} items; "
            f"weakest class '{worst[0]}' (F1 {worst[1]['f1']:.3f})")


def soft_neighbourhood_density(probs, temperature: float = 0.05, max_items: int = 4000, seed: int = 0) -> float:
    """Soft Neighbourhood Density (Saito et al., ICCV 2021): a label-free score of a model on unlabelled target
    data — the mean entropy of each input's softmax-weighted similarity to the others, computed on the L2-normalised
    class probabilities. Higher: the predictions form denser neighbourhoods (the paper's choice for selecting
    hyperparameters and checkpoints of adaptation without target labels). Above ``max_items`` a seeded sample of
    them is scored (the similarity matrix is quadratic)."""
    p = np.asarray(probs, dtype=np.float64)
    if len(p) > max_items:
        p = p[np.sort(np.random.default_rng(seed).permutation(len(p))[:max_items])]
    if len(p) < 2:
        return float("nan")
    f = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T / temperature
    np.fill_diagonal(sim, -1.0 / temperature)  # as the authors' code: an input is not its own neighbour
    sim -= sim.max(1, keepdims=True)
    w = np.exp(sim)
    w /= w.sum(1, keepdims=True)
    return float(-(w * np.log(w + 1e-5)).sum(1).mean())
