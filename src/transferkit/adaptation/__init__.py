"""Unsupervised domain adaptation: labelled source data, unlabelled target data (``--target``, ``--adapt``).

One hook object per run (:func:`adaptation_for`): :class:`NoAdaptation` without ``--target``, whose hook points
do nothing, else :class:`Adaptation`: it reads the target (``read_target``), wraps the strategy for end-to-end
methods (a second, target stream through the same loop), fits the probe head on adapted features for
feature-level methods, re-estimates BatchNorm statistics on the target (AdaBN), and scores the target where it
has labels. A run calls the same hook points either way. Target labels never reach training or any choice.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _runfolder as rf
from ..config import Option, declare
from ..errors import ConfigError
from ..evaluation import classification_metrics, soft_neighbourhood_density
from ..strategies import Strategy, strategies
from ._feature_level import (
    choose_adapted_probe,
    fit_adapted_probe,
    fit_mcc_probe,
    guard,
)
from ._losses import PairModel, PairObjective, make_term
from ._report import MAP_FILE
from ._report import sections as report_sections
from ._streams import PairedItems, batchnorm_layers, reestimate_batchnorm
from ._target import UNLABELLED, Target, read_target

log = logging.getLogger("transferkit")

METHODS = {
    "none": "source only: the baseline every method is measured against (the target is still scored)",
    "auto": "with linear-probe: the plain probe, CORAL, SA and OT fitted on the cached features, the one whose "
            "target predictions have the highest soft neighbourhood density kept (no target label read)",
    "coral": "feature level, with linear-probe: CORAL, source features re-coloured with the target's covariance",
    "sa": "feature level, with linear-probe: subspace alignment of the domains' principal directions",
    "ot": "feature level, with linear-probe: entropic optimal-transport map of the source onto the target",
    "adabn": "BatchNorm statistics re-estimated on the target (any strategy; backbones with BatchNorm)",
    "dann": "end-to-end while training: domain discriminator behind gradient reversal",
    "cdan": "end-to-end while training: CDAN+E, discriminator conditioned on the predictions, entropy-weighted",
    "mcc": "minimum class confusion on target predictions: end-to-end while fine-tuning; with linear-probe, the "
           "logistic head refined on the cached features",
    "self-train": "end-to-end while training: cross-entropy on confident (≥ 0.9) target pseudo-labels",
}
declare(
    "domain adaptation",
    Option("target", help="unlabelled inputs from where the model will be used (a folder or CSV; class folders "
           "only score)", path=True),
    Option("adapt", default="none", help="method: " + " | ".join(METHODS), choices=tuple(METHODS)),
)
FEATURE_LEVEL = ("coral", "sa", "ot")
BOTH_WAYS = ("mcc",)  # on the probe's cached features, or end to end while fine-tuning
#: --adapt auto: heads fitted on the same cached features. Not MCC: it minimises the very confusion SND rewards,
#: so SND preferred it on 5 of the 6 Office-Caltech pairs where OT was better on 4 (bench/domain_adaptation.py)
AUTO_CANDIDATES = ("none", *FEATURE_LEVEL)
END_TO_END = ("dann", "cdan", "mcc", "self-train")
TARGET_PREDICTIONS = "target_predictions.csv"
MAP_POINTS = 300  # per domain, in the report's feature map
SELECTION = {"val": "best source-val epoch (target labels are never read for a choice)",
             "last": "last epoch (--select last; target labels are never read for a choice)",
             "probe": "C by cross-validation on source train (target labels are never read for a choice)"}


#: Transfer-Learning-Library's recipe for its domain adaptation examples (DANN, CDAN, MCC and their source-only
#: line): a 256-d bottleneck (Linear, BatchNorm, ReLU) before the classifier, SGD with Nesterov momentum 0.9 at
#: 0.01 (the backbone at a tenth), weight decay 1e-3, lr × (1 + γ i)^-0.75, 32 source + 32 target items per step,
#: a fixed number of steps whatever the data size. TLlib runs 20,000 steps on a GPU; here 300, the same schedule
#: curve compressed (``--epochs`` / ``--batch-size`` set others).
RECIPE = {"head": "bottleneck:256", "optimizer": "sgd", "lr": 0.01, "backbone_lr_mult": 0.1, "weight_decay": 1e-3,
          "batch_size": 32, "schedule": "inverse", "warmup_epochs": 0.0, "steps": 300}


def adaptation_defaults(cfg, strategy) -> dict:
    """Settings a run with ``--target`` trains with where the user gave none: the published recipe for fine-tuning
    runs, end-to-end methods and their source-only line alike (so a method's gain is the method's, not the
    schedule's); nothing for probes and runs without a target."""
    if not cfg.target or not strategy.trains_backbone or strategy.probe_after or cfg.adapt not in ("none", *END_TO_END):
        return {}
    return dict(RECIPE)


def check(cfg, strategy, task, backbone) -> None:
    """Refuse combinations that cannot work, saying which do."""
    method = cfg.adapt
    if method not in METHODS:
        raise ConfigError(f"Unknown --adapt '{method}'", f"one of {', '.join(METHODS)}")
    if method != "none" and not cfg.target:
        raise ConfigError(f"--adapt {method} needs unlabelled target data", "--target FOLDER_OR_CSV",
                          "Add --target (the inputs where the model will be used)")
    if not cfg.target:
        return
    if not task.adaptable:
        raise ConfigError(f"Domain adaptation (--target) is not available for task {task.name}",
                          "a classification run", "Leave --target and --adapt out")
    if not compatible(strategy, method):
        frozen = method in FEATURE_LEVEL or method == "auto"
        doing = "works on frozen features, not" if frozen else "adapts while training, which"
        raise ConfigError(f"--adapt {method} {doing} with --strategy {strategy.name}"
                          + ("" if frozen else " does not do"),
                          pairings())
    if method == "adabn" and not batchnorm_layers(backbone):
        raise ConfigError(f"--adapt adabn re-estimates BatchNorm statistics; {cfg.backbone} has no BatchNorm layers",
                          "a backbone with BatchNorm (EfficientNet, ResNet …)",
                          f"Use another method ({', '.join(m for m in METHODS if m not in ('none', 'adabn'))})")


def pairings() -> str:
    """Which registered strategies each kind of method runs with (error messages)."""
    def able(methods):
        return ", ".join(n for n, cls in strategies().items() if compatible(cls, methods[0]))

    return f"{able(FEATURE_LEVEL)} with {', '.join(FEATURE_LEVEL)}; {able(END_TO_END)} with {', '.join(END_TO_END)}"


def compatible(strategy, method: str) -> bool:
    """Whether ``method`` can run with ``strategy`` (a strategy class or object)."""
    probe = bool(strategy.probe_first and not strategy.trains_backbone)
    if method in FEATURE_LEVEL or method == "auto":  # they adapt the probe's features
        return probe
    if method in END_TO_END:
        return strategy.trains_backbone and not strategy.probe_after or method in BOTH_WAYS and probe
    return method in METHODS


def target_outcomes(run_dir: Path, classes: list[str]) -> np.ndarray:
    """1/0 right/wrong per labelled target input of a run (``target_predictions.csv``), in the target's order."""
    with open(Path(run_dir) / TARGET_PREDICTIONS, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in classes]
    return np.array([float(r["label"] == r["pred"]) for r in rows])


class NoAdaptation:
    """The adaptation hook of a run without ``--target``: every hook point leaves the run as it is. A run calls its
    hook at the same points whether or not it adapts, so the run's code has no branch for adaptation."""

    def wrap(self, strategy, n_train: int, num_features: int, num_classes: int):
        """The strategy the loop trains with (end-to-end methods add their term and target stream)."""
        return strategy

    def before_training(self, run) -> None:
        """Once the model is built, before any head is fitted or epoch trained (``run``: the run's plan)."""

    def training_items(self, train_ds, target_dataset):
        """The dataset the loop reads (``target_dataset()`` builds the target's, if a method needs it)."""
        return train_ds

    def probe(self, task, model, fs: np.ndarray, ys: np.ndarray, cfg) -> dict:
        """Fit the probe head on the source training features ``fs`` (labels ``ys``)."""
        return task.fit_probe(model, fs, ys, cfg) or {}

    def after_training(self, run, model) -> None:
        """After the last epoch (and the probe), before the evaluation split is scored."""

    def score(self, model, run_dir: Path, classes: list[str]) -> dict[str, Any]:
        """What the run's metrics.json gains (``{"adaptation": …}``)."""
        return {}


def adaptation_for(cfg, modality, task, data, backbone, strategy, target: Target | None = None):
    """The run's adaptation hook: :class:`Adaptation` with ``--target`` (``target``: already read, else read from
    ``cfg.target``), :class:`NoAdaptation` without."""
    check(cfg, strategy, task, backbone)
    if not cfg.target:
        return NoAdaptation()
    return Adaptation(cfg, target or read_target(cfg.target, cfg, modality, data),
                      SELECTION[cfg.select if strategy.trains_backbone else "probe"])


class Adaptation(NoAdaptation):
    """What a run with ``--target`` does beyond a source-only run, at the hook points of :class:`NoAdaptation`."""

    def __init__(self, cfg, target: Target, selection: str):
        self.cfg, self.method, self.target, self.selection = cfg, cfg.adapt, target, selection
        # The report's map: samples of both domains (``samples``), before and after adaptation, features only of those.
        self.samples: tuple[np.ndarray, np.ndarray] | None = None
        self.source_labels: np.ndarray | None = None
        self.before: tuple[np.ndarray, np.ndarray] | None = None
        self.after_source: np.ndarray | None = None
        self.after_target: np.ndarray | None = None  # feature-level methods: the target in their own space
        self.pretrained_target: np.ndarray | None = None  # the probe's target features, as the backbone was loaded
        self.target_feats: np.ndarray | None = None  # the final model's target features (scored)
        self.info: dict[str, Any] = {}

    def start(self, source_labels) -> tuple[np.ndarray, np.ndarray]:
        """Draw the map's samples (up to MAP_POINTS source training and target inputs, by the seed)."""
        self.source_labels = np.asarray(source_labels)
        rng = np.random.default_rng(self.cfg.seed)
        self.samples = tuple(np.sort(rng.permutation(n)[:MAP_POINTS])
                             for n in (len(self.source_labels), len(self.target.items)))
        return self.samples

    # -- training ---------------------------------------------------------------------------------------------
    def wrap(self, strategy, n_train: int, num_features: int, num_classes: int):
        if self.method not in END_TO_END or not strategy.trains_backbone:  # MCC on a probe: at the head fit
            return strategy
        total = strategy.steps_per_epoch(n_train) * self.cfg.epochs  # the loop's steps: the schedule's length
        return Adapted(strategy, self.method, num_classes, total)

    def before_training(self, run) -> None:
        """The map's samples as the backbone was loaded (features cached on disk); AdaBN's source statistics for a
        probe, which learns on them."""
        train = run.data.splits_["train"]
        si, ti = self.start(train.labels)
        if run.strategy.trains_backbone:  # only the samples are needed
            self.before = (run.features(run.backbone, train.subset(si), "map source"),
                           run.features(run.backbone, self.target.items.subset(ti), "map target"))
        else:  # the probe reads every item anyway
            self.pretrained_target = run.features(run.backbone, self.target.items, "target")
            self.before = (run.features(run.backbone, train, "train")[si], self.pretrained_target[ti])
            if self.method == "adabn":
                self._reestimate(run, run.backbone, train, "source")

    def training_items(self, train_ds, target_dataset):
        """End-to-end methods: a target item beside every source item."""
        return PairedItems(train_ds, target_dataset()) if self.method in END_TO_END else train_ds

    def probe(self, task, model, fs: np.ndarray, ys: np.ndarray, cfg) -> dict:
        """The probe head: on adapted source features (feature-level methods), else the task's own fit."""
        si, ti = self.samples
        if self.method == "auto":
            out = choose_adapted_probe(AUTO_CANDIDATES, task, model, fs, ys, self.pretrained_target, cfg)
            self.info.update(chosen=out["method"], chosen_by="highest soft neighbourhood density of the target "
                             "predictions (Saito et al., ICCV 2021); no target label read", candidates_snd=out["snd"])
        elif self.method in BOTH_WAYS and self.pretrained_target is not None:  # the probe's own run, not lp-ft's
            out = fit_mcc_probe(task, model, fs, ys, self.pretrained_target, cfg)
        elif self.method not in FEATURE_LEVEL:
            self.after_source = fs[si]
            return super().probe(task, model, fs, ys, cfg)
        else:
            out = fit_adapted_probe(self.method, task, model, fs, ys, self.pretrained_target, cfg)
        if self.method != "auto":  # a method the user chose: checked against the plain probe without labels
            self.info.update(guard(self.method, task, model, fs, ys, self.pretrained_target, cfg))
        self.after_source, self.after_target = out["mapped"][0][si], out["mapped"][1][ti]
        return out["info"]

    def after_training(self, run, model) -> None:
        """AdaBN's target statistics; the trained model's features of the map's source samples and of the target."""
        if self.method == "adabn":
            self._reestimate(run, model.backbone, self.target.items, "target")
        if run.strategy.trains_backbone:
            self.after_source = run.features(model.backbone, run.data.splits_["train"].subset(self.samples[0]),
                                             "map source")
        self.target_feats = run.features(model.backbone, self.target.items, "target")

    def _reestimate(self, run, backbone, items, domain: str) -> None:
        n = reestimate_batchnorm(backbone.to(run.device), run.loader(items), run.move)
        self.info[f"batchnorm_{domain}_inputs"] = n
        log.info("AdaBN: BatchNorm statistics re-estimated on %d %s inputs", n, domain)

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, model, run_dir: Path, classes: list[str]) -> dict[str, Any]:
        """Target metrics where the target has labels (of source classes); target_predictions.csv."""
        target_feats = self.target_feats
        with torch.no_grad():
            logits = model.head.cpu()(torch.from_numpy(target_feats)).float()
        probs = logits.softmax(1).numpy()
        pred = probs.argmax(1)
        items = self.target.items
        truth = np.asarray(items.labels)
        scored = truth != UNLABELLED
        rf.write_rows(run_dir / TARGET_PREDICTIONS, [
            {"input": inp, "label": name or "", "pred": classes[p], "confidence": f"{pr[p]:.4f}"}
            for inp, name, p, pr in zip(items.inputs, self.target.names, pred, probs)])
        if self.before is not None and self.after_source is not None:
            si, ti = self.samples
            after = (self.after_source, target_feats[ti] if self.after_target is None else self.after_target)
            _save_map(run_dir / MAP_FILE, self.before, after, self.source_labels[si], truth[ti], self.cfg.seed)
        out: dict[str, Any] = {
            "method": self.method, "target": self.target.location, "n_target": len(items),
            "n_scored": int(scored.sum()), "unknown_classes": self.target.unknown,
            "shared_with_source": self.target.shared_with_source, "bad_files": len(self.target.bad_files),
            "selection": self.selection, **self.info,
            "snd": soft_neighbourhood_density(probs, seed=self.cfg.seed)}  # label-free: every input, labelled or not
        if scored.any():
            m = classification_metrics(truth[scored], pred[scored], classes)
            out.update(accuracy=m["accuracy"], macro_f1=m["macro_f1"],
                       per_class={c: {"accuracy": v["recall"], "n": v["support"]}  # a class's accuracy is its recall
                                  for c, v in m["per_class"].items() if v["support"]})
        return {"adaptation": out}


class Adapted(Strategy):
    """A strategy with an end-to-end adaptation term: the inner strategy decides what trains; this adds the
    term (attached as ``model.adapter`` while training), the target stream and the combined objective. Every other
    part of the strategy contract is the inner strategy's, passed on explicitly."""

    def __init__(self, inner: Strategy, method: str, classes: int, total_steps: int):
        super().__init__(inner.cfg)
        self.inner, self.method, self.classes, self.total_steps = inner, method, classes, total_steps
        for what in ("name", "probe_first", "probe_after", "trains_backbone", "uses_val", "adapters_only",
                     "length_batches", "defaults"):  # what the inner strategy declares about itself
            setattr(self, what, getattr(inner, what))

    def prepare_backbone(self, backbone):
        return self.inner.prepare_backbone(backbone)

    def backbone_lr_mult(self) -> float:
        return self.inner.backbone_lr_mult()

    def head_lr(self) -> float:
        return self.inner.head_lr()

    def layer_decay(self) -> float | None:
        return self.inner.layer_decay()

    def on_epoch_start(self, model, epoch: int) -> None:
        self.inner.on_epoch_start(model, epoch)

    def epoch_samples(self, n: int, batch_size: int, epochs: int) -> int:
        return self.inner.epoch_samples(n, batch_size, epochs)

    def peak_scale(self, total_steps: int) -> float:
        return self.inner.peak_scale(total_steps)

    def steps_per_epoch(self, n: int) -> int:
        return self.inner.steps_per_epoch(n)

    def bn_policy(self) -> str:
        return self.inner.bn_policy()

    def train_mode(self, model) -> None:
        self.inner.train_mode(model)

    def prepare(self, model) -> None:
        self.inner.prepare(model)
        with torch.random.fork_rng():  # its initial weights depend on the seed alone, not on what ran before
            torch.manual_seed(self.inner.cfg.seed)
            # the term reads what the head's last layer reads (the bottleneck's output, or the backbone's)
            model.adapter = make_term(self.method, model.head[-1].in_features, self.classes, self.total_steps)

    def param_groups(self, model) -> list[dict]:
        return self.inner.param_groups(model) + [
            {"params": list(model.adapter.parameters()), "lr": self.inner.head_lr(), "name": "adapter"}]

    def train_module(self, model):
        return PairModel(self.inner.train_module(model))

    def objective(self, task):
        return PairObjective(self.inner.objective(task))

    def finish(self, model) -> None:
        self.inner.finish(model)
        if hasattr(model, "adapter"):
            del model.adapter


def _save_map(path: Path, before, after, source_labels, target_labels, seed: int) -> None:
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


__all__ = ["RECIPE", "Adaptation", "NoAdaptation", "adaptation_defaults", "adaptation_for", "compatible", "pairings", "target_outcomes", "END_TO_END", "FEATURE_LEVEL", "MAP_FILE", "METHODS", "TARGET_PREDICTIONS", "check", "read_target",
           "report_sections"]
