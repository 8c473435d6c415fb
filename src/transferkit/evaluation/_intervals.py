"""Confidence intervals for paired comparisons over seeds × evaluation items, and McNemar's exact test.

A strategy's score varies with the seed (initialisation, batch order, augmentation) *and* with which
items happened to land in the evaluation split. In a comparison every seed is scored on the same
items, so the per-item differences ``d[s, i]`` (strategy − baseline, seed ``s``, item ``i``) form a
crossed seeds × items design. With random seed and item effects,

    Var(mean d) = σ²_seed / k + σ²_item / n + σ²_resid / (k n),

estimated from the two-way ANOVA mean squares as (MS_seed + MS_item − MS_resid) / (k n), each variance
component kept non-negative; the interval uses Student's t with Satterthwaite's degrees of freedom. With one seed it is the paired
t-interval over items. Metrics that are not a mean over items (macro-F1) enter through their
jackknife pseudo-values, which are. See docs/statistics.md for the references.
"""

from __future__ import annotations

from typing import Any

import numpy as np


#: fewer evaluation items than this give no interval (one image's pseudo-value is no spread; two give t with 1 df)
MIN_ITEMS = 10


def crossed_interval(d: np.ndarray, level: float = 0.95, centre: float | None = None) -> dict[str, Any]:
    """Mean of ``d`` (seeds × items) with a ``level`` interval and the variance split between sources.

    Args:
        d: per-seed, per-item paired differences (or pseudo-values), shape (k, n).
        centre: the point estimate to centre on (default: ``d.mean()``).
    """
    from scipy import stats  # heavy: loaded on first use

    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    k, n = d.shape
    mean = float(d.mean()) if centre is None else float(centre)
    if n < MIN_ITEMS:  # the spread over items cannot be estimated: no interval, and said so
        return {"mean": mean, "low": None, "high": None, "se": None, "df": None, "level": level, "n_seeds": int(k),
                "n_items": int(n), "variance": {}, "too_few": f"{n} evaluation item(s): an interval needs at least "
                f"{MIN_ITEMS}", "method": "none (too few items)"}
    if k == 1:
        var_items = float(d.var(ddof=1) / n) if n > 1 else 0.0
        var, df, parts = var_items, max(n - 1, 1), {"seeds": 0.0, "items": var_items, "residual": 0.0}
    else:
        grand = d.mean()
        rows, cols = d.mean(1), d.mean(0)
        ms_seed = n * float(((rows - grand) ** 2).sum()) / (k - 1)
        ms_item = k * float(((cols - grand) ** 2).sum()) / max(n - 1, 1)
        resid = d - rows[:, None] - cols[None, :] + grand
        ms_res = float((resid ** 2).sum()) / max((k - 1) * (n - 1), 1)
        # Each variance component is kept non-negative (a mean square below MS_resid estimates a zero
        # component), so the estimate is (MS_seed + MS_item − MS_resid) / (k n) when both exceed MS_resid,
        # MS_item / (k n) or MS_seed / (k n) when one does, and MS_resid / (k n) when neither does.
        dfs = {"seeds": k - 1, "items": max(n - 1, 1), "residual": max((k - 1) * (n - 1), 1)}
        coef = {"seeds": float(ms_seed > ms_res), "items": float(ms_item > ms_res)}
        coef["residual"] = 1.0 - coef["seeds"] - coef["items"]
        ms = {"seeds": ms_seed, "items": ms_item, "residual": ms_res}
        total = sum(coef[j] * ms[j] for j in ms)
        var = max(total, 0.0) / (k * n)
        parts = {"seeds": max(ms_seed - ms_res, 0.0) / (k * n), "items": max(ms_item - ms_res, 0.0) / (k * n),
                 "residual": ms_res / (k * n)}
        # Satterthwaite (1946): degrees of freedom of a linear combination of mean squares.
        den = sum((coef[j] * ms[j]) ** 2 / dfs[j] for j in ms)
        df = total ** 2 / den if den > 0 else float(k - 1)
        df = float(min(max(df, 1.0), sum(dfs.values())))
    se = float(np.sqrt(var))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {"mean": mean, "low": mean - half, "high": mean + half, "se": se, "df": float(df), "level": level,
            "n_seeds": int(k), "n_items": int(n), "variance": parts, "method": "crossed seeds × items, Satterthwaite t"}


def dominant_source(interval: dict[str, Any]) -> str:
    """Which source of variation widens the interval most, as advice."""
    v = interval["variance"]
    if interval["n_seeds"] == 1:
        return "it covers evaluation items only (one seed): more seeds would add seed-to-seed variation to it"
    if v["seeds"] > v["items"] + v["residual"]:
        return "seed-to-seed variation dominates: more seeds would narrow it most"
    return "which items are in the evaluation split dominates: more evaluation data would narrow it most"


def accuracy_values(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-item values whose mean is the accuracy."""
    return (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float64)


def macro_f1_values(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Jackknife pseudo-values of macro-F1 (over the classes present in ``y_true``): n·F − (n−1)·F₍₋ᵢ₎.

    Leaving item i out changes the counts of its true and predicted class only, so all n leave-one-out
    values come from the per-class counts in O(n).
    """
    t, p = np.asarray(y_true, int), np.asarray(y_pred, int)
    n = len(t)
    if n < 2:
        return np.zeros(n)
    tp = np.bincount(t[t == p], minlength=n_classes).astype(float)
    fp = np.bincount(p[t != p], minlength=n_classes).astype(float)
    fn = np.bincount(t[t != p], minlength=n_classes).astype(float)
    present = np.bincount(t, minlength=n_classes) > 0

    def f1(tp_, fp_, fn_):
        den = 2 * tp_ + fp_ + fn_
        return np.where(den > 0, 2 * tp_ / np.where(den > 0, den, 1), 0.0)

    per_class = f1(tp, fp, fn) * present
    total = per_class.sum()
    hit = t == p
    # class t loses a TP (hit) or an FN (miss); on a miss class p also loses an FP
    f1_t = np.where(hit, f1(tp[t] - 1, fp[t], fn[t]), f1(tp[t], fp[t], fn[t] - 1)) * present[t]
    f1_p = f1(tp[p], fp[p] - 1, fn[p]) * present[p]
    loo = total - per_class[t] + f1_t + np.where(hit, 0.0, f1_p - per_class[p])
    full = total / present.sum()
    return n * full - (n - 1) * loo / present.sum()


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, alternative: str = "two-sided") -> dict[str, Any]:
    """McNemar's exact test (binomial on the discordant pairs) for paired right/wrong outcomes; ``alternative``
    ``greater``: the one-sided test that ``a`` is right more often than ``b``."""
    from scipy.stats import binomtest  # heavy: loaded on first use

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5, alternative=alternative).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": float(p)}


def paired_lower(a, b, alpha: float = 0.05) -> bool:
    """Whether the per-item errors ``a`` are lower than ``b`` (the same items, in order) by a one-sided Wilcoxon
    signed-rank test at ``alpha``, and lower in total. Items with equal errors carry no evidence; with fewer
    than about five that differ the test cannot reach 0.05, so a handful of items never decides."""
    from scipy.stats import wilcoxon  # heavy: loaded on first use

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired errors of {a.shape} and {b.shape} items")
    if a.sum() >= b.sum() or not np.any(a != b):
        return False
    return bool(wilcoxon(a, b, zero_method="wilcox", alternative="less").pvalue < alpha)
