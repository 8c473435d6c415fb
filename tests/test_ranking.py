from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import optimize

import transferkit as tk
from transferkit.ranking import hscore, knn_accuracy, leep, logme, nce, rank

from conftest import make_folder


def direct_log_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over α, β of log N(y; 0, I/β + FFᵀ/α) per sample, averaged over one-hot classes (scipy)."""
    n = len(y)
    total = 0.0
    for c in np.unique(y):
        t = (y == c).astype(float)

        def neg(params):
            a, b = np.exp(params)
            cov = np.eye(n) / b + f @ f.T / a
            sign, logdet = np.linalg.slogdet(cov)
            return 0.5 * (logdet + t @ np.linalg.solve(cov, t) + n * np.log(2 * np.pi))

        res = optimize.minimize(neg, x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
        total += -res.fun / n
    return total / len(np.unique(y))


@pytest.mark.parametrize("n,d", [(60, 8), (20, 40)])  # N > D and D > N
def test_logme_matches_direct_maximisation(n, d):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    f = rng.normal(size=(n, d)) + 0.8 * np.eye(3)[y] @ rng.normal(size=(3, d))
    assert logme(f, y) == pytest.approx(direct_log_evidence(f, y), abs=2e-4)


def test_scores_prefer_informative_features():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    good = np.eye(4)[y] * 3 + rng.normal(size=(200, 4)) * 0.5
    good = np.hstack([good, rng.normal(size=(200, 28))])
    noise = rng.normal(size=(200, 32))
    assert logme(good, y) > logme(noise, y)
    assert hscore(good, y) > hscore(noise, y)
    assert knn_accuracy(good, y) > 0.9 > 0.5 > knn_accuracy(noise, y)


def test_leep_and_nce_against_definitions():
    rng = np.random.default_rng(2)
    theta = rng.dirichlet(np.ones(5), size=50)
    y = rng.integers(0, 3, 50)
    # LEEP by its definition, in loops
    pyz = np.zeros((3, 5))
    for i in range(50):
        pyz[y[i]] += theta[i] / 50
    cond = pyz / pyz.sum(0)
    expected = np.mean([np.log(sum(cond[y[i], z] * theta[i, z] for z in range(5))) for i in range(50)])
    assert leep(theta, y) == pytest.approx(expected, rel=1e-10)
    # NCE = −H(Y|Z) from counts
    z = theta.argmax(1)
    h = 0.0
    for zz in np.unique(z):
        for yy in np.unique(y):
            p = np.mean((z == zz) & (y == yy))
            if p:
                h -= p * np.log(p / np.mean(z == zz))
    assert nce(theta, y) == pytest.approx(-h, rel=1e-10)
    # labels that are a function of the source label give NCE = 0 (no uncertainty left)
    assert nce(theta, theta.argmax(1) % 2) == pytest.approx(0.0, abs=1e-12)


def test_knn_matches_sklearn_leave_one_out():
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    f = rng.normal(size=(90, 6)) + np.eye(3)[y] @ rng.normal(size=(3, 6))
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    ref = cross_val_score(KNeighborsClassifier(5), fn, y, cv=LeaveOneOut()).mean()
    assert knn_accuracy(f, y) == pytest.approx(ref, abs=0.03)  # vote tie-breaking may differ


def test_rank_puts_a_label_free_backbone_last(tmp_path):
    """A backbone of all-zero weights carries nothing about the labels: it ranks last by every score."""
    import torch

    zero = tk.create_backbone("random:test_efficientnet")
    with torch.no_grad():
        for p in zero.parameters():
            p.zero_()
    zero.name = "zero"
    data = tk.ImageFolderData(make_folder(tmp_path / "d", classes=3, per_class=20), val_fraction=0.2, test_fraction=0.2)
    rows = rank(data, [zero, "random:test_efficientnet"], image_size=32, cache_dir=tmp_path / "c",
                output=tmp_path / "out")
    assert [r["backbone"] for r in rows] == ["random:test_efficientnet", "zero"]
    good, bad = rows
    for m in ("logme", "leep", "nce", "hscore", "knn"):
        assert good[m] > bad[m], m
    saved = json.loads((tmp_path / "out" / "rank.json").read_text())
    assert [r["backbone"] for r in saved["ranking"]] == ["random:test_efficientnet", "zero"]
