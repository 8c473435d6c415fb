"""The strategy contract and its registry: what trains, at which learning rate, when it unfreezes, and how
BatchNorm behaves in frozen parts."""

from __future__ import annotations

from torch import nn

from ..config import Option, RunConfig, declare
from ..heads import TransferModel

_STRATEGIES: dict[str, type["Strategy"]] = {}


def register_strategy(cls: type["Strategy"]) -> type["Strategy"]:
    """Register a strategy class by its ``name`` (a class decorator) and declare its options. Each run builds its
    own strategy object (:func:`get_strategy`)."""
    declare(f"strategy {cls.name}", *cls.options)
    _STRATEGIES[cls.name] = cls
    return cls


def strategies() -> dict[str, type["Strategy"]]:
    """Every registered strategy class by name (``partial:K`` stands for its family)."""
    return dict(_STRATEGIES)


def set_trainable(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def set_stages_trainable(backbone, stages: list[list[str]], flag: bool) -> None:
    """Set ``requires_grad`` on the parameters of these backbone ``stages`` (lists of parameter names)."""
    named = dict(backbone.named_parameters())
    for names in stages:
        for n in names:
            named[n].requires_grad_(flag)


def apply_bn_policy(model: nn.Module, bn: str) -> None:
    """Decide which BatchNorm layers normalise with their running statistics (eval mode).

    BatchNorm layers whose parameters are frozen always stay in eval mode: a frozen layer must not
    drift. With ``bn="eval"`` every BatchNorm layer also keeps its pretrained running statistics
    while its scale and shift train (the Keras fine-tuning recipe): small batches give noisy batch
    statistics that differ from the pretrained ones, which measurably hurts fine-tuning on small
    data. With ``bn="train"`` trainable BatchNorm layers use and update batch statistics. The policy is about
    pretrained statistics: the new layers of a head (a segmentation decoder's BatchNorm) have none worth keeping and
    always learn theirs unless frozen.
    """
    pretrained = {id(m) for m in getattr(model, "backbone", model).modules()}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            frozen = bool(params) and not any(p.requires_grad for p in params)
            if frozen or (bn == "eval" and id(m) in pretrained):
                m.eval()


class Strategy:
    """Base strategy: everything trains, backbone at ``lr × backbone_lr_mult``."""

    name = ""
    description = ""  # one line for --help
    options: tuple[Option, ...] = ()  # settings this strategy reads, declared when it is registered
    probe_first = False  # fit the head on cached features before the loop (linear-probe, lp-ft)
    probe_after = False  # fit the head on the trained backbone's features after the loop (contrastive)
    trains_backbone = True
    uses_val = True  # the loop scores val each epoch (and may select the best epoch on it)
    adapters_only = False  # only adapters inside attention layers train (LoRA)
    length_batches = True  # the loop may group items of similar length into a batch (texts: less padding)
    defaults: dict = {}  # settings this strategy wants where the user gave none (before the modality's)

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    @classmethod
    def parse(cls, name: str) -> tuple | None:
        """The constructor's arguments after ``cfg`` if ``name`` names this strategy (``partial:2`` → (2,)), else None."""
        return () if name == cls.name else None

    def prepare_backbone(self, backbone):
        """The backbone this strategy starts from (the pretrained one, as loaded)."""
        return backbone

    def finish(self, model: TransferModel) -> None:
        """Make the trained model a plain network before it is saved."""

    def prepare(self, model: TransferModel) -> None:
        set_trainable(model, True)

    def backbone_lr_mult(self) -> float:
        return self.cfg.backbone_lr_mult

    def head_lr(self) -> float:
        return self.cfg.lr

    def layer_decay(self) -> float | None:
        return self.cfg.layer_decay

    def param_groups(self, model: TransferModel) -> list[dict]:
        """Head group at the head lr; backbone stages at the backbone lr, decayed toward the input."""
        cfg = self.cfg
        base = cfg.lr * self.backbone_lr_mult()
        stages = model.backbone.stages()
        named = dict(model.backbone.named_parameters())
        groups, seen = [], set()
        decay = self.layer_decay()
        for i, names in enumerate(stages):
            scale = decay ** (len(stages) - 1 - i) if decay else 1.0
            params = [named[n] for n in names if n in named and n not in seen]
            seen.update(names)
            if params:
                groups.append({"params": params, "lr": base * scale, "name": f"backbone.stage{i}"})
        rest = [p for n, p in named.items() if n not in seen]  # anything the stage matcher missed
        if rest:
            groups.append({"params": rest, "lr": base, "name": "backbone.other"})
        groups.append({"params": list(model.head.parameters()), "lr": self.head_lr(), "name": "head"})
        return groups

    def on_epoch_start(self, model: TransferModel, epoch: int) -> None:
        """Change what trains at the start of ``epoch`` (0-based); called again on resume."""

    def train_module(self, model: TransferModel) -> nn.Module:
        """What the loop calls on a batch: the whole model (logits) by default."""
        return model

    def objective(self, task):
        """What the loop minimises on ``train_module``'s outputs: the task's loss by default."""
        return task

    def epoch_samples(self, n: int, batch_size: int, epochs: int) -> int:
        """Training items drawn per epoch: one pass, or ``--epoch-steps`` batches whatever the data size."""
        return self.cfg.epoch_steps * batch_size if self.cfg.epoch_steps else n

    def peak_scale(self, total_steps: int) -> float:
        """Factor on every group's learning rate for a run of ``total_steps`` optimizer steps (1: as configured)."""
        return 1.0

    def steps_per_epoch(self, n: int) -> int:
        """Optimizer steps per epoch over ``n`` training items (drop_last keeps BatchNorm away from 1-item batches)."""
        return max(1, self.epoch_samples(n, self.cfg.batch_size, self.cfg.epochs) // self.cfg.batch_size)

    def bn_policy(self) -> str:
        """``auto``: pretrained BatchNorm statistics stay (eval); scratch has none worth keeping (train)."""
        return self.cfg.bn if self.cfg.bn != "auto" else "eval"

    def train_mode(self, model: TransferModel) -> None:
        model.train()
        apply_bn_policy(model, self.bn_policy())
