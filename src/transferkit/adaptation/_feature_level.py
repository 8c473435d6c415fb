"""Adaptation on cached frozen features (linear-probe cost), with skada's adapters: CORAL, subspace alignment
and entropic optimal-transport mapping. The source features are mapped towards the target, the task's probe
head is fitted on them, and the target-side map (affine for all three) is folded into that head, so the saved
model is an ordinary backbone + linear head that reads raw target features."""

from __future__ import annotations

import copy
import logging
import warnings
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, TrainingError
from ..evaluation import soft_neighbourhood_density
from ..features import feature_scale
from ._losses import MinimumClassConfusion
from ._methods import AdaptationMethod, candidates, get_method, register_method

log = logging.getLogger("transferkit")

SUBSPACE_DIM = 100  # subspace alignment keeps this many principal directions (at most the smaller domain - 1)


class FeatureLevel(AdaptationMethod):
    """A map of the source features towards the target (skada), fitted on the probe's cached features; the task's
    head is fitted on the mapped features and the target-side map folded into it."""

    kind = "feature-level"
    on_probe = probe_candidate = guarded = True

    def skada_adapter(self, n_source: int, n_target: int, dim: int):
        raise NotImplementedError

    def refit(self, adapter):
        """Another adapter to try when this one's map is not finite, or None."""
        return None

    def fit_probe(self, task, model, fs, ys, ft, cfg) -> dict:
        return fit_adapted_probe(self, task, model, fs, ys, ft, cfg)


@register_method
class CORAL(FeatureLevel):
    name = "coral"
    help = "feature level, with linear-probe: CORAL, source features re-coloured with the target's covariance"

    def skada_adapter(self, n_source, n_target, dim):
        from skada import CORALAdapter  # heavy (POT), loaded with --target

        return CORALAdapter(reg="auto")  # Ledoit-Wolf shrinkage: stable with fewer samples than dimensions

    def refit(self, adapter):  # a covariance too close to singular for its square root
        log.warning("CORAL: the estimated covariances gave a non-finite map; refitted with shrinkage 0.5")
        return type(adapter)(reg=0.5)


@register_method
class SA(FeatureLevel):
    name = "sa"
    help = "feature level, with linear-probe: subspace alignment of the domains' principal directions"

    def skada_adapter(self, n_source, n_target, dim):
        from skada import SubspaceAlignmentAdapter  # heavy (POT), loaded with --target

        return SubspaceAlignmentAdapter(n_components=max(1, min(SUBSPACE_DIM, n_source - 1, n_target - 1, dim)),
                                        random_state=0)


@register_method
class OT(FeatureLevel):
    name = "ot"
    help = "feature level, with linear-probe: entropic optimal-transport map of the source onto the target"

    def skada_adapter(self, n_source, n_target, dim):
        from skada import EntropicOTMappingAdapter  # heavy (POT), loaded with --target

        # Sinkhorn on the median-normalised squared distance; the barycentric map carries source into target.
        return EntropicOTMappingAdapter(reg_e=1.0, norm="median")


def fit_adapted_probe(method, task, model, fs: np.ndarray, ys: np.ndarray, ft: np.ndarray, cfg) -> dict:
    """Map the source features towards the target with ``method`` (a :class:`FeatureLevel` method or its name), fit
    the task's probe head on them, fold the target-side map into the head. Returns the probe's info, plus the maps
    of a sample of both domains for the report."""
    method = get_method(method) if isinstance(method, str) else method
    scale = feature_scale(np.vstack([fs, ft]))
    X = np.vstack([fs, ft]).astype(np.float64) / scale
    domain = np.r_[np.ones(len(fs), int), -np.ones(len(ft), int)]  # skada: positive source, negative target
    y = np.r_[ys, -np.ones(len(ft), int)]
    ad = method.skada_adapter(len(fs), len(ft), fs.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = ad.fit_transform(X, y, sample_domain=domain)
        again = method.refit(ad) if not np.isfinite(mapped).all() else None
        if again is not None:
            ad, mapped = again, again.fit_transform(X, y, sample_domain=domain)
    if not np.isfinite(mapped).all():
        raise TrainingError(f"--adapt {method.name} mapped the features to NaN or infinite values ({len(fs)} source, "
                            f"{len(ft)} target inputs of {fs.shape[1]} features)", "a finite feature map",
                            "Use another --adapt method (ot, sa), or more target inputs")
    src, tgt = mapped[: len(fs)], mapped[len(fs):]
    head = model.head
    in_dim = src.shape[1]
    if in_dim != head[0].in_features:  # subspace alignment works in its own d dimensions
        head[0] = torch.nn.Linear(in_dim, head[0].out_features)
    info = task.fit_probe(model, src.astype(np.float32), ys, cfg) or {}
    A, c = affine_map(lambda z: ad.transform(z, sample_domain=-np.ones(len(z), int)), fs.shape[1], X[len(fs):])
    first = head[0]
    with torch.no_grad():  # logits = W (A x/scale + c) + b
        W = first.weight.double()
        folded = torch.nn.Linear(fs.shape[1], first.out_features)
        folded.weight.copy_((W @ torch.from_numpy(A.T)) / scale)
        folded.bias.copy_(first.bias.double() + W @ torch.from_numpy(c))
    head[0] = folded
    info.update(adapter=type(ad).__name__, feature_scale=round(scale, 5))
    return {"info": info, "mapped": (src, tgt)}


def affine_map(fn, dim: int, check: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` as ``x @ A + c`` (read off at 0 and the unit vectors), checked on real inputs ``check``: a map
    that is not affine cannot be folded into a linear head and fails loudly here."""
    c = np.asarray(fn(np.zeros((1, dim))), dtype=np.float64)[0]
    A = np.asarray(fn(np.eye(dim)), dtype=np.float64) - c
    sample = check[: min(len(check), 64)]
    want, got = np.asarray(fn(sample), dtype=np.float64), sample @ A + c
    err = float(np.abs(want - got).max() / (np.abs(want).max() + 1e-12))
    if err > 1e-6:
        raise RuntimeError(f"the target-side map is not affine (relative error {err:.2g}); it cannot be folded")
    return A, c


def choose_adapted_probe(methods: tuple[str, ...], task, model, fs: np.ndarray, ys: np.ndarray, ft: np.ndarray,
                         cfg) -> dict:
    """``--adapt auto`` on the probe: fit the head with each of ``methods`` ("none": the plain probe) on the cached
    features and keep the one whose predictions on the unlabelled target have the highest soft neighbourhood
    density (no target label is read). Returns the kept method's probe info and maps, the method and every SND."""
    start, scores, best = copy.deepcopy(model.head), {}, None
    for method in methods:
        model.head = copy.deepcopy(start)
        try:
            out = get_method(method).fit_probe(task, model, fs, ys, ft, cfg) or \
                {"info": task.fit_probe(model, fs, ys, cfg) or {}, "mapped": (fs, ft)}
        except (TrainingError, RuntimeError) as exc:  # a method that cannot map these features is passed over
            log.warning("--adapt auto: %s passed over (%s)", method, exc)
            continue
        scores[method] = target_snd(model.head, ft, cfg.seed)
        if best is None or scores[method] > scores[best[0]]:
            best = (method, model.head, out)
    method, model.head, out = best
    log.info("--adapt auto: %s kept (soft neighbourhood density on the target: %s)", method,
             ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
    return {**out, "method": method, "snd": scores}


MCC_WEIGHT = 1.0  # the MCC term's weight beside the source loss (Jin et al.'s and TLlib's trade-off)


def fit_mcc_probe(task, model, fs: np.ndarray, ys: np.ndarray, ft: np.ndarray, cfg) -> dict:
    """Minimum class confusion on the probe (Jin et al. 2020, at feature level): the logistic head is fitted on the
    source as usual (C by cross-validation), then refined by L-BFGS on the same regularised source loss plus the
    MCC of its predictions on the unlabelled target features. Deterministic; seconds on cached features."""
    info = task.fit_probe(model, fs, ys, cfg) or {}
    first = model.head[0]
    if len(model.head) != 1 or "C" not in info:
        raise TrainingError("--adapt mcc on a probe refines a linear logistic head", "--head linear",
                            "Use --head linear, or --strategy finetune for MCC while fine-tuning")
    scale = feature_scale(fs)  # the logistic fit's own scale: its C carries over
    zs, zt = (torch.from_numpy(np.asarray(x, np.float32) / scale) for x in (fs, ft))
    y = torch.from_numpy(np.asarray(ys)).long()
    w = (first.weight.detach() * scale).clone().requires_grad_(True)
    b = first.bias.detach().clone().requires_grad_(True)
    keep = b.detach() > -1e3  # classes absent from the source stay impossible
    mcc, ridge = MinimumClassConfusion(1), 1.0 / (2 * float(info["C"]) * len(zs))
    opt = torch.optim.LBFGS([w, b], max_iter=100, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        bias = torch.where(keep, b, b.detach())
        value = (F.cross_entropy(zs @ w.T + bias, y) + ridge * (w ** 2).sum()
                 + MCC_WEIGHT * mcc(None, None, None, zt @ w.T + bias))
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        first.weight.copy_(w / scale)
        first.bias.copy_(torch.where(keep, b, first.bias))
    info.update(head="logistic regression refined with target MCC (L-BFGS)", mcc_weight=MCC_WEIGHT)
    return {"info": info, "mapped": (fs, ft)}


def target_snd(head, ft: np.ndarray, seed: int) -> float:
    """Soft neighbourhood density of ``head``'s predictions on the target features (higher: denser)."""
    with torch.no_grad():
        probs = head(torch.from_numpy(np.asarray(ft, np.float32))).softmax(1).numpy()
    return soft_neighbourhood_density(probs, seed=seed)


def guard(method: str, task, head, ft: np.ndarray, fs_plain: np.ndarray, ys: np.ndarray, ft_plain: np.ndarray,
          cfg) -> dict:
    """The label-free check of a method the user chose on the probe: SND of its ``head``'s predictions on its
    target features ``ft`` against the plain probe's — fitted on a copy of the head, on the features as the
    backbone was loaded (``fs_plain``, ``ft_plain``; the same arrays for a feature-level map folded into the head,
    other arrays for AdaBN). A lower SND predicts a loss: said as a warning."""
    plain = SimpleNamespace(head=copy.deepcopy(head))  # the probe fit reads the head alone: no backbone copy
    task.fit_probe(plain, fs_plain, ys, cfg)
    mine, base = target_snd(head, ft, cfg.seed), target_snd(plain.head, ft_plain, cfg.seed)
    predicts_loss = bool(mine < base)
    if predicts_loss:
        log.warning("--adapt %s: its target predictions are less dense than the source-only probe's (soft "
                    "neighbourhood density %.4f < %.4f): the label-free criterion predicts it loses accuracy on the "
                    "target; --adapt none or auto may do better", method, mine, base)
    return {"snd_source_only": base, "criterion_predicts_loss": predicts_loss}


@register_method
class Auto(AdaptationMethod):
    name = "auto"
    help = ("with linear-probe: the plain probe, CORAL, SA, OT and MCC fitted on the cached features, the one whose "
            "target predictions have the highest soft neighbourhood density kept; while fine-tuning: source only, "
            "DANN, CDAN and MCC each trained, the same criterion choosing (no target label read either way)")
    kind = "search"
    on_probe = searches = True

    def compatible(self, strategy) -> bool:  # while training: one run per trained candidate (training's auto)
        return bool(strategy.probe_first and not strategy.trains_backbone
                    or strategy.trains_backbone and not strategy.probe_after)

    def check(self, cfg, strategy, backbone) -> None:
        if strategy.trains_backbone and not strategy.probe_after:
            raise ConfigError(f"--adapt auto while fine-tuning trains one run per method, and --strategy was not "
                              f"named (it resolved to {strategy.name} here)", "--strategy finetune (or another that "
                              "trains) named with --adapt auto", "Name the strategy, or name one method (--adapt dann …)")

    def fit_probe(self, task, model, fs, ys, ft, cfg) -> dict:
        out = choose_adapted_probe(candidates("probe"), task, model, fs, ys, ft, cfg)
        out["report"] = {"chosen": out["method"], "chosen_by": "highest soft neighbourhood density of the target "
                         "predictions (Saito et al., ICCV 2021); no target label read", "candidates_snd": out["snd"]}
        return out
