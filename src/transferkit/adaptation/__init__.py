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
from ..evaluation import classification_metrics, deep_embedded_validation, soft_neighbourhood_density
from ..strategies import strategies
from . import _mcc  # noqa: F401  (registers MCC; the other built-in methods register with the modules below)
from ._adapted import Adapted, LowestTargetLoss
from ._feature_level import guard
from ._methods import AdaptationMethod, candidates, get_method, methods, register_method
from ._report import MAP_FILE, save_map
from ._report import sections as report_sections
from ._streams import PairedItems, reestimate_batchnorm
from ._target import UNLABELLED, Target, read_target

log = logging.getLogger("transferkit")

METHODS = {name: cls.help for name, cls in methods().items()}  # the built-in methods, registered on import
declare(
    "domain adaptation",
    Option("target", help="unlabelled inputs from where the model will be used (a folder or CSV; class folders "
           "only score)", path=True),
    Option("adapt", default="none", help="method: " + " | ".join(METHODS), choices=tuple(METHODS)),
)
#: --adapt auto on a probe: heads fitted on the same cached features (MCC among them: SND's choice among every probe
#: line, MCC included, was the best by target labels on 9 of 12 Office-Caltech pair × image-size settings; auto
#: without MCC chose OT, the best on 3: bench/domain_adaptation.py). While fine-tuning: one run each, chosen by SND.
AUTO_CANDIDATES = candidates("probe")
TRAINED_AUTO = candidates("trained")
TARGET_PREDICTIONS = "target_predictions.csv"
MAP_POINTS = 300  # per domain, in the report's feature map
SELECTION = {"val": "best source-val epoch (target labels are never read for a choice)",
             "last": "last epoch (--select last; target labels are never read for a choice)",
             "probe": "C by cross-validation on source train (target labels are never read for a choice)",
             "dev": "epoch with the lowest Deep Embedded Validation estimate of the target loss (--select dev; "
                    "target labels are never read for a choice)"}
#: per-epoch target scores (SND, and accuracy where the target has labels: recorded, never chosen on) read at most
#: this many target inputs, a seeded sample
EPOCH_TARGET = 500


#: Transfer-Learning-Library's recipe for its domain adaptation examples (DANN, CDAN, MCC and their source-only
#: line): a 256-d bottleneck (Linear, BatchNorm, ReLU) before the classifier, SGD with Nesterov momentum 0.9 at
#: 0.01 (the backbone at a tenth), weight decay 1e-3, lr × (1 + γ i)^-0.75, 32 source + 32 target items per step,
#: epochs of a fixed number of steps whatever the data size. TLlib runs 20 epochs of 1,000 steps on a GPU; here 10
#: of 30, the same schedule curve compressed (``--epochs``, ``--epoch-steps``, ``--batch-size`` set others).
RECIPE = {"head": "bottleneck:256", "optimizer": "sgd", "lr": 0.01, "backbone_lr_mult": 0.1, "weight_decay": 1e-3,
          "batch_size": 32, "schedule": "inverse", "warmup_epochs": 0.0, "epochs": 10, "epoch_steps": 30}


def adaptation_defaults(cfg, strategy) -> dict:
    """Settings a run with ``--target`` trains with where the user gave none: the published recipe for fine-tuning
    runs, end-to-end methods and their source-only line alike (so a method's gain is the method's, not the
    schedule's); nothing for probes and runs without a target."""
    if not cfg.target or not strategy.trains_backbone or strategy.probe_after or not get_method(cfg.adapt).recipe:
        return {}
    return dict(RECIPE)


def check(cfg, strategy, task, backbone) -> None:
    """Refuse combinations that cannot work, saying which do."""
    if cfg.select == "dev" and not cfg.target:
        raise ConfigError("--select dev ranks epochs by their estimated loss on the target, and no --target was given",
                          "--target FOLDER_OR_CSV", "Add --target, or use --select val")
    method = get_method(cfg.adapt)
    if method.adapts and not cfg.target:
        raise ConfigError(f"--adapt {method.name} needs unlabelled target data", "--target FOLDER_OR_CSV",
                          "Add --target (the inputs where the model will be used)")
    if not cfg.target:
        return
    if not task.adaptable:
        raise ConfigError(f"Domain adaptation (--target) is not available for task {task.name}",
                          "a classification run", "Leave --target and --adapt out")
    method.check(cfg, strategy, backbone)
    if not method.compatible(strategy):
        frozen = method.on_probe and not method.while_training
        doing = "works on frozen features, not" if frozen else "adapts while training, which"
        raise ConfigError(f"--adapt {method.name} {doing} with --strategy {strategy.name}"
                          + ("" if frozen else " does not do"), pairings())


def pairings() -> str:
    """Which registered strategies the methods of each kind run with (error messages)."""
    on_probe = [n for n, c in methods().items() if c.on_probe and not c.while_training and c.kind != "search"]
    in_loop = [n for n, c in methods().items() if c.while_training]

    def able(names):
        return ", ".join(n for n, cls in strategies().items() if get_method(names[0]).compatible(cls))

    return f"{able(on_probe)} with {', '.join(on_probe)}; {able(in_loop)} with {', '.join(in_loop)}"


def compatible(strategy, method: str) -> bool:
    """Whether the method registered as ``method`` can run with ``strategy`` (a strategy class or object)."""
    return get_method(method).compatible(strategy)


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

    def after_training(self, run, model, history: list[dict]) -> None:
        """After the last epoch (and the probe), before the evaluation split is scored (``history``: the loop's
        rows, the kept one marked; empty for a probe)."""

    def epoch_scores(self, run):
        """``callable(model) -> dict`` of scores the loop adds to every epoch's row, or None."""
        return None

    def select_by(self):
        """What ranks a training run's epochs in place of the task's val score (``--select dev``), or None."""
        return None

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
        self.cfg, self.method, self.target, self.selection = cfg, get_method(cfg.adapt), target, selection
        # The report's map: samples of both domains (``samples``), before and after adaptation, features only of those.
        self.samples: tuple[np.ndarray, np.ndarray] | None = None
        self.source_labels: np.ndarray | None = None
        self.before: tuple[np.ndarray, np.ndarray] | None = None
        self.after_source: np.ndarray | None = None
        self.after_target: np.ndarray | None = None  # feature-level methods: the target in their own space
        self.pretrained_target: np.ndarray | None = None  # the probe's target features, as the backbone was loaded
        self.pretrained_source: np.ndarray | None = None  # and its source training features
        self.target_feats: np.ndarray | None = None  # the final model's target features (scored)
        self.info: dict[str, Any] = {}
        self._scorer = None  # epoch_scores' function, built once
        self._guarded = False  # the method's probe was checked against the plain probe

    def start(self, source_labels) -> tuple[np.ndarray, np.ndarray]:
        """Draw the map's samples (up to MAP_POINTS source training and target inputs, by the seed)."""
        self.source_labels = np.asarray(source_labels)
        rng = np.random.default_rng(self.cfg.seed)
        self.samples = tuple(np.sort(rng.permutation(n)[:MAP_POINTS])
                             for n in (len(self.source_labels), len(self.target.items)))
        return self.samples

    # -- training ---------------------------------------------------------------------------------------------
    def wrap(self, strategy, n_train: int, num_features: int, num_classes: int):
        if not self.method.while_training or not strategy.trains_backbone:  # MCC on a probe: at the head fit
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
            self.pretrained_source = run.features(run.backbone, train, "train")
            self.before = (self.pretrained_source[si], self.pretrained_target[ti])
        self.method.before_training(self, run)

    def training_items(self, train_ds, target_dataset):
        """End-to-end methods: a target item beside every source item."""
        return PairedItems(train_ds, target_dataset()) if self.method.while_training else train_ds

    def probe(self, task, model, fs: np.ndarray, ys: np.ndarray, cfg) -> dict:
        """The probe head: the method's own fit on a probe's cached features (adapted source features, a refined
        head, auto's choice), else the task's; a method the user chose is checked against the plain probe."""
        si, ti = self.samples
        out = None if self.pretrained_target is None else \
            self.method.fit_probe(task, model, fs, ys, self.pretrained_target, cfg)
        if out is None:
            self.after_source = fs[si]
            return super().probe(task, model, fs, ys, cfg)
        self.info.update(out.get("report", {}))
        if self.method.guarded:  # without labels: SND against the plain probe's
            self.info.update(guard(self.method.name, task, model.head, self.pretrained_target, fs, ys,
                                   self.pretrained_target, cfg))
            self._guarded = True
        self.after_source, self.after_target = out["mapped"][0][si], out["mapped"][1][ti]
        return out["info"]

    def epoch_scores(self, run):
        """Every trained epoch's label-free scores on a seeded sample of up to EPOCH_TARGET target inputs: the soft
        neighbourhood density of their predictions (``target_snd``, higher is better) and Deep Embedded Validation
        (``target_dev``, the source val loss weighted toward the target; lower is better); where the target has
        labels, their accuracy (``target_acc``: history.csv and the report only; no choice reads it)."""
        if not run.strategy.trains_backbone:
            return None
        if self._scorer is not None:
            return self._scorer
        items = self.target.items
        rng = np.random.default_rng(self.cfg.seed)
        sample = items.subset(np.sort(rng.permutation(len(items))[:EPOCH_TARGET]))
        truth = np.asarray(sample.labels)
        scored = truth != UNLABELLED
        target = run.held_loader(sample, "target sample")
        val = run.data.splits_["val"]
        if self.cfg.select == "dev" and len(val) < 4:
            raise ConfigError(f"--select dev weighs the source val split's losses toward the target, and it holds "
                              f"{len(val)} item(s)", "a val split of at least 4 source items",
                              "Raise --val-fraction (or give a val split), or use --select last")
        val_loader = run.held_loader(val, "val") if len(val) else None

        def outputs(model, loader):
            feats, logits = [], []
            for x, _ in loader:
                f = model.backbone(run.move(x))
                feats.append(f.float().cpu())
                logits.append(model.head(f).float().cpu())
            return torch.cat(feats).numpy(), torch.cat(logits)

        def scores(model) -> dict[str, float]:
            model.eval()
            with torch.no_grad():
                ft, logits = outputs(model, target)
                probs = logits.softmax(1).numpy()
                out = {"target_snd": soft_neighbourhood_density(probs, seed=self.cfg.seed)}
                if val_loader is not None:
                    fv, lv = outputs(model, val_loader)
                    losses = torch.nn.functional.cross_entropy(lv, torch.as_tensor(val.labels), reduction="none")
                    out["target_dev"] = deep_embedded_validation(fv, losses.numpy(), ft, seed=self.cfg.seed)
            if scored.any():
                out["target_acc"] = float((probs.argmax(1)[scored] == truth[scored]).mean())
            return out

        self._scorer = scores
        return scores

    def select_by(self):
        return LowestTargetLoss() if self.cfg.select == "dev" else None

    def after_training(self, run, model, history: list[dict]) -> None:
        """AdaBN's target statistics; the trained model's features of the map's source samples and of the target;
        a trained model's DEV: the estimate its kept epoch (else its last) recorded."""
        self.method.after_training(self, run, model)
        final = next((r for r in history if r.get("kept")), history[-1] if history else {})
        if "target_dev" in final:
            self.info["dev"] = final["target_dev"]
        if run.strategy.trains_backbone:
            self.after_source = run.features(model.backbone, run.data.splits_["train"].subset(self.samples[0]),
                                             "map source")
        self.target_feats = run.features(model.backbone, self.target.items, "target")
        if self.method.guarded and not self._guarded and self.pretrained_source is not None:  # AdaBN on a probe
            self.info.update(guard(self.method.name, run.task, model.head, self.target_feats, self.pretrained_source,
                                   np.asarray(run.data.splits_["train"].labels), self.pretrained_target, self.cfg))

    def reestimate(self, run, backbone, items, domain: str) -> None:
        """BatchNorm statistics of ``backbone`` re-estimated on ``items`` (AdaBN), recorded in the run's info."""
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
            save_map(run_dir / MAP_FILE, self.before, after, self.source_labels[si], truth[ti], self.cfg.seed)
        out: dict[str, Any] = {
            "method": self.method.name, "target": self.target.location, "n_target": len(items),
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


__all__ = ["AUTO_CANDIDATES", "METHODS", "RECIPE", "TRAINED_AUTO", "Adaptation", "AdaptationMethod", "MAP_FILE",
           "NoAdaptation", "TARGET_PREDICTIONS", "adaptation_defaults", "adaptation_for", "candidates", "check",
           "compatible", "get_method", "methods", "pairings", "read_target", "register_method", "report_sections",
           "target_outcomes"]
