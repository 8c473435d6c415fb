"""The target stream beside the source: paired training items, and BatchNorm statistics re-estimated on a
domain (AdaBN, Li et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import default_collate

from ..errors import ConfigError
from ._methods import AdaptationMethod, methods, register_method


class PairedItems(torch.utils.data.Dataset):
    """Source item ``i`` with a target item drawn at random (under the caller's seed: the loop seeds each item,
    so the draw depends on (seed, epoch, i) only). An epoch is one pass over the source."""

    def __init__(self, source, target):
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        xs, y = self.source[i]
        xt, _ = self.target[int(torch.randint(len(self.target), ()))]
        return (xs, xt), y

    def collate_fn(self, batch):
        def collate(ds, pairs):
            return (getattr(ds, "collate_fn", None) or default_collate)(pairs)

        xs, y = collate(self.source, [(s, lab) for (s, _), lab in batch])
        xt, _ = collate(self.target, [(t, 0) for (_, t), _ in batch])
        return {"source": xs, "target": xt}, y

    def __getattr__(self, name: str):  # items, lengths, held: the source's
        if name in ("source", "target"):
            raise AttributeError(name)
        return getattr(self.source, name)


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(backbone: nn.Module, loader, move) -> int:
    """Replace every BatchNorm layer's running mean and variance with their average over ``loader``'s batches
    (the rest of the network in eval mode, nothing else changes). Returns the number of inputs seen."""
    layers = batchnorm_layers(backbone)
    momenta = [m.momentum for m in layers]
    backbone.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    seen = 0
    try:
        for x, y in loader:
            backbone(move(x))
            seen += len(y)
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        backbone.eval()
    return seen


@register_method
class AdaBN(AdaptationMethod):
    """BatchNorm statistics re-estimated on the target (Li et al. 2017): with a probe, its head learns on the source
    statistics and the target's are put in after it (checked like CORAL: SND against the plain probe)."""

    name = "adabn"
    help = "BatchNorm statistics re-estimated on the target (any strategy; backbones with BatchNorm)"
    kind = "statistics"
    guarded = True  # on a probe: the re-estimated target features against the plain probe's

    def compatible(self, strategy) -> bool:
        return True

    def check(self, cfg, strategy, backbone) -> None:
        if not batchnorm_layers(backbone):
            others = ", ".join(n for n, cls in methods().items() if cls.adapts and cls is not AdaBN)
            raise ConfigError(f"--adapt adabn re-estimates BatchNorm statistics; {cfg.backbone} has no BatchNorm "
                              "layers", "a backbone with BatchNorm (EfficientNet, ResNet …)",
                              f"Use another method ({others})")

    def before_training(self, adaptation, run) -> None:
        if not run.strategy.trains_backbone:  # a probe learns on the source statistics
            adaptation.reestimate(run, run.backbone, run.data.splits_["train"], "source")

    def after_training(self, adaptation, run, model) -> None:
        adaptation.reestimate(run, model.backbone, adaptation.target.items, "target")
