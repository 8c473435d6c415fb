"""Choose a backbone before training: transferability scores on frozen features.

LogME (You et al. 2021), LEEP (Nguyen et al. 2020), NCE (Tran et al. 2019), H-score (Bao et al.
2019) and kNN leave-one-out accuracy. Higher is better for every score.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _dist
from ._launch import across_processes, join_process_group
from ._runfolder import write_json
from .backbones import Backbone, create_backbone
from .config import RunConfig
from .data import LabelledData
from .errors import ConfigError
from .features import extract_features
from .modalities import modality_of

log = logging.getLogger("transferkit")
METRICS = ("logme", "leep", "nce", "hscore", "knn")


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME: the maximised log marginal evidence per sample of a Bayesian linear model F → one-hot(y).

    Float64; one thin SVD serves every class; the fixed point ``α = γ/mᵀm``, ``β = (N−γ)/‖Fm−y‖²``
    runs vectorised over classes. D > N is handled exactly: the D − rank zero eigenvalues of FᵀF
    enter the log-determinant as log α.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    n, d = f.shape
    classes = np.unique(y)
    targets = (y[:, None] == classes[None, :]).astype(np.float64)  # N × K one-hot
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2  # nonzero eigenvalues of FᵀF (up to rank)
    z = u.T @ targets  # K columns of Uᵀy
    y_sq = (targets ** 2).sum(0)
    resid_out = y_sq - (z ** 2).sum(0)  # part of y outside the column space of F
    k = targets.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    for _ in range(max_iter):
        denom = alpha[None, :] + beta[None, :] * sigma[:, None]
        gamma = (beta[None, :] * sigma[:, None] / denom).sum(0)
        coef = beta[None, :] * s[:, None] * z / denom  # m in the right-singular basis
        m_sq = (coef ** 2).sum(0)
        res = ((s[:, None] * coef - z) ** 2).sum(0) + resid_out
        # When y lies in the span of F (possible for D ≥ N) the evidence rises toward a finite limit
        # as β → ∞; the clip stops there instead of overflowing.
        new_alpha = np.clip(gamma / np.maximum(m_sq, 1e-300), 1e-10, 1e10)
        new_beta = np.clip((n - gamma) / np.maximum(res, 1e-300), 1e-10, 1e10)
        done = np.all(np.abs(new_alpha - alpha) / alpha < tol) and np.all(np.abs(new_beta - beta) / beta < tol)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom = alpha[None, :] + beta[None, :] * sigma[:, None]
    coef = beta[None, :] * s[:, None] * z / denom
    m_sq = (coef ** 2).sum(0)
    res = ((s[:, None] * coef - z) ** 2).sum(0) + resid_out
    logdet = np.log(denom).sum(0) + (d - len(sigma)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - alpha / 2 * m_sq - beta / 2 * res
                - logdet / 2 - n / 2 * np.log(2 * np.pi))
    return float((evidence / n).mean())


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: mean log-likelihood of the target labels under the empirical P(y|z) ∘ θ(x)."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(labels)
    classes, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((len(classes), theta.shape[1]))
    np.add.at(joint, yi, theta)
    joint /= len(y)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    return float(np.mean(np.log(np.maximum((theta * cond[yi]).sum(1), 1e-300))))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """NCE: −H(Y | Z) with Z the source classifier's argmax label."""
    zhat = np.asarray(source_probs).argmax(1)
    _, yi = np.unique(labels, return_inverse=True)
    _, zi = np.unique(zhat, return_inverse=True)
    joint = np.zeros((yi.max() + 1, zi.max() + 1))
    np.add.at(joint, (yi, zi), 1.0)
    joint /= len(yi)
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / pz)[nz])).sum())


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score: tr(cov(f)⁻¹ cov(E[f|y])), with a Ledoit-Wolf shrinkage covariance (stable when D ≥ N)."""
    from sklearn.covariance import LedoitWolf  # heavy: loaded on first use

    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    y = np.asarray(labels)
    cov_f = LedoitWolf(assume_centered=True).fit(f).covariance_
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))  # pinv: constant features score 0


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity (majority vote, ties to the nearest)."""
    f = torch.nn.functional.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32), dim=1)
    y = torch.as_tensor(np.unique(labels, return_inverse=True)[1])
    k = min(k, len(y) - 1)
    correct = 0
    for start in range(0, len(y), 1024):
        sim = f[start:start + 1024] @ f.T
        idx = torch.arange(start, min(start + 1024, len(y)))
        sim[torch.arange(len(idx)), idx] = -float("inf")  # leave self out
        nn_idx = sim.topk(k, dim=1).indices
        votes = torch.zeros(len(idx), int(y.max()) + 1)
        weights = torch.linspace(1.0, 0.99, k).expand(len(idx), k)  # ties go to the nearer neighbours
        votes.scatter_add_(1, y[nn_idx], weights)
        correct += int((votes.argmax(1) == y[idx]).sum())
    return correct / len(y)


def score_features(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None,
                   metrics: tuple[str, ...] = METRICS) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for m in metrics:
        if m in ("leep", "nce") and source_probs is None:
            out[m] = None  # no source classifier to score with
        elif m == "logme":
            out[m] = logme(features, labels)
        elif m == "leep":
            out[m] = leep(source_probs, labels)
        elif m == "nce":
            out[m] = nce(source_probs, labels)
        elif m == "hscore":
            out[m] = hscore(features, labels)
        elif m == "knn":
            out[m] = knn_accuracy(features, labels)
    return out


@across_processes
def rank(data: LabelledData, backbones: list[str | Backbone], metric: str = "all", cache_dir: str | Path | None = None,
         batch_size: int = 64, image_size: int | None = None, output: str | Path | None = None,
         max_length: int | None = None, clip_seconds: float | None = None) -> list[dict[str, Any]]:
    """Score each backbone on the training split's frozen features; best first (by ``metric``, LogME for all).

    ``processes``: feature extraction is shared by this many worker processes (default: one per GPU, else 1).

    Example:
        >>> rank(ImageFolderData("photos/"), ["packaged:efficientnet_lite0", "random:tf_efficientnet_lite0"])
    """
    metrics = METRICS if metric == "all" else (metric,)
    if any(m not in METRICS for m in metrics):
        raise ConfigError(f"Unknown metric '{metric}'", f"one of {', '.join(METRICS)} or all")
    join_process_group(cpu=False)
    data.setup()
    modality = modality_of(data)
    items = data.splits_["train"]
    y = np.asarray(items.labels)
    cfg = RunConfig(image_size=image_size, augment="none", max_length=max_length, clip_seconds=clip_seconds)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for spec in backbones:
        t0 = time.time()
        torch.manual_seed(0)
        b = spec if isinstance(spec, Backbone) else create_backbone(spec, max_length=max_length)
        name = b.name if isinstance(spec, Backbone) else spec
        modality.check_backbone(b, name)
        _, eval_tf, dc = modality.pipeline(b, cfg, data)
        feats = extract_features(b, items, eval_tf, batch_size, cache_dir, device=device,
                                 dataset=modality.dataset(b, items, eval_tf),
                                 preprocessing=modality.feature_key(eval_tf, dc), shard=True)
        probs = None
        if b.source_head is not None:
            with torch.no_grad():
                probs = b.source_head.to("cpu")(torch.from_numpy(feats)).softmax(1).numpy()
        scores = score_features(feats, y, probs, metrics)
        rows.append({"backbone": name, **scores, "num_features": int(feats.shape[1]),
                     "seconds": round(time.time() - t0, 2)})
        log.info("rank %s: %s", name, ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if v is not None))
    key = "logme" if metric == "all" else metric
    rows.sort(key=lambda r: -np.inf if r.get(key) is None else -r[key])
    if output is not None and _dist.is_main():
        Path(output).mkdir(parents=True, exist_ok=True)
        write_json(Path(output) / "rank.json", {"data": data.location, "n_train": len(items), "metric": key,
                                                "ranking": rows})
    return rows
