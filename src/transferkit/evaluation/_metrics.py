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


def deep_embedded_validation(source_feats, source_losses, target_feats, seed: int = 0) -> float:
    """Deep Embedded Validation (You et al., ICML 2019): the source validation loss weighted by each item's density
    ratio target/source in feature space, with the paper's control variate — an estimate of the target loss that
    reads no target label. Lower is better. The ratio comes from a logistic domain classifier; here it is fitted on
    the validation and target features themselves, 2-fold cross-fitted so no item is weighted by a classifier that
    saw it (the paper fits it on the training features). Not skada's ``DeepEmbeddedValidation``: it scores an
    estimator on raw inputs and splits the source itself, weighting a third of it — 8 items of dslr's 24."""
    from sklearn.linear_model import LogisticRegression  # heavy: loaded on first use
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    fs, ft = np.asarray(source_feats, np.float64), np.asarray(target_feats, np.float64)
    loss = np.asarray(source_losses, np.float64)
    if len(fs) < 4 or len(ft) < 4:
        return float("nan")
    x = np.vstack([fs, ft])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    d = np.r_[np.zeros(len(fs), int), np.ones(len(ft), int)]
    folds = StratifiedKFold(2, shuffle=True, random_state=seed)
    p = cross_val_predict(LogisticRegression(C=0.1, max_iter=1000), x, d, cv=folds, method="predict_proba")[:len(fs), 1]
    p = np.clip(p, 1e-3, 1 - 1e-3)
    w = p / (1 - p) * len(fs) / len(ft)
    w = w / w.mean()  # weights of mean 1 over the validation items
    weighted = w * loss
    var = np.var(w, ddof=1)
    eta = -np.cov(weighted, w, ddof=1)[0, 1] / var if var > 0 else 0.0
    return float(weighted.mean() + eta * w.mean() - eta)


def soft_neighbourhood_density(probs, temperature: float = 0.05, max_items: int = 4000, seed: int = 0) -> float:
    """Soft Neighbourhood Density (Saito et al., ICCV 2021): a label-free score of a model on unlabelled target
    data — the mean entropy of each input's softmax-weighted similarity to the others, computed on the L2-normalised
    class probabilities. Higher: the predictions form denser neighbourhoods (the paper's choice for selecting
    hyperparameters and checkpoints of adaptation without target labels), as skada computes it. Above ``max_items``
    a seeded sample of them is scored (the similarity matrix is quadratic)."""
    p = np.asarray(probs, dtype=np.float64)
    if len(p) > max_items:
        p = p[np.sort(np.random.default_rng(seed).permutation(len(p))[:max_items])]
    if len(p) < 2:
        return float("nan")
    from skada.metrics import SoftNeighborhoodDensity  # heavy: loaded on first use

    class Given:  # skada scores an estimator's predict_proba on the target: these are the predictions
        def predict_proba(self, x, **_):
            return x

    target = -np.ones(len(p), dtype=int)  # skada's marks: negative domain = target, label -1 = unlabelled
    return float(SoftNeighborhoodDensity(T=temperature)(Given(), p, target, sample_domain=target))
