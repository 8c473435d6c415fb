"""The strategy an end-to-end method trains with (the inner strategy plus its term and target stream), and what
ranks a trained run's epochs without target labels (``--select dev``)."""

from __future__ import annotations

import torch

from ..strategies import Strategy
from ._losses import PairModel, PairObjective


class LowestTargetLoss:
    """Ranks epochs by their Deep Embedded Validation estimate of the target loss (``--select dev``). Not by SND:
    a head's near-uniform first-epoch predictions are the densest, so SND ranked the least trained epoch first."""

    def selection_score(self, row: dict) -> tuple[float]:
        return (-row["target_dev"],)

    def beats(self, row: dict, best: dict) -> bool:
        return row["target_dev"] < best["target_dev"]


class Adapted(Strategy):
    """A strategy with an end-to-end adaptation term: the inner strategy decides what trains; this adds the
    term (attached as ``model.adapter`` while training), the target stream and the combined objective. Every other
    part of the strategy contract is the inner strategy's, passed on explicitly."""

    def __init__(self, inner: Strategy, method, classes: int, total_steps: int):
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
            model.adapter = self.method.term(model.head[-1].in_features, self.classes, self.total_steps)

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
