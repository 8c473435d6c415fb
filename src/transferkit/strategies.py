"""Transfer strategies: which parameters train, at which learning rate, when they unfreeze,
and how BatchNorm behaves in frozen parts.

Every strategy works for every backbone through the backbone contract (``stages()``). A run calls
:meth:`Strategy.prepare_backbone` before the head is attached and :meth:`Strategy.finish` before the
model is saved; the training loop calls :meth:`Strategy.prepare` once, :meth:`Strategy.param_groups`
once, then :meth:`Strategy.on_epoch_start` and :meth:`Strategy.train_mode` at the start of each epoch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import add_lora, merge_lora
from .config import Option, RunConfig, declare
from .errors import ConfigError
from .heads import TransferModel
from .tasks import Task

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
    data. With ``bn="train"`` trainable BatchNorm layers use and update batch statistics.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            frozen = bool(params) and not any(p.requires_grad for p in params)
            if frozen or bn == "eval":
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
        """Training items drawn per epoch (one pass by default)."""
        return n

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


@register_strategy
class Finetune(Strategy):
    name = "finetune"
    description = 'everything trains; backbone lr = lr × backbone_lr_mult'


@register_strategy
class Scratch(Strategy):
    """Random init: every layer is new, so every layer gets the full learning rate."""

    name = "scratch"
    description = 'same architecture from random init: the baseline transfer must beat'

    def prepare_backbone(self, backbone):
        return backbone.fresh()

    def backbone_lr_mult(self) -> float:
        return 1.0

    def layer_decay(self) -> float | None:
        return None

    def bn_policy(self) -> str:
        return self.cfg.bn if self.cfg.bn != "auto" else "train"


@register_strategy
class LinearProbe(Strategy):
    name = "linear-probe"
    description = 'backbone frozen; features extracted once (cached); logistic-regression head'
    probe_first = True
    trains_backbone = False

    def prepare(self, model: TransferModel) -> None:
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)


@register_strategy
class Frozen(Strategy):
    """The backbone stays as loaded (BatchNorm statistics too); the task's head trains by gradient descent."""

    name = "frozen"
    description = 'backbone frozen; the head trains in the loop, with augmentation (detection: FPN, RPN and RoI heads)'

    def prepare(self, model: TransferModel) -> None:
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)


@register_strategy
class ZeroShot(Strategy):
    """Nothing trains: the pretrained model already does the task (Whisper transcribes); its scores are the
    baseline a fine-tuned model must beat."""

    name = "zero-shot"
    description = 'the pretrained model as loaded, trained on nothing (a Whisper recogniser): the ASR baseline'
    trains_backbone = False
    uses_val = False


@register_strategy
class Partial(Strategy):
    """Only the last K stages of the backbone (and the head) train."""

    name = "partial:K"
    description = "only the last K backbone stages and the head train"

    def __init__(self, cfg: RunConfig, k: int):
        super().__init__(cfg)
        self.k = k
        self.name = f"partial:{k}"

    @classmethod
    def parse(cls, name: str) -> tuple | None:
        return (int(name[8:]),) if name.startswith("partial:") and name[8:].isdigit() else None

    def prepare(self, model: TransferModel) -> None:
        stages = model.backbone.stages()
        if not 1 <= self.k <= len(stages):
            raise ConfigError(f"partial:{self.k} asks for {self.k} stages; the backbone has {len(stages)}",
                              f"partial:K with 1 ≤ K ≤ {len(stages)}")
        set_trainable(model, False)
        set_trainable(model.head, True)
        set_stages_trainable(model.backbone, stages[-self.k:], True)


@register_strategy
class Gradual(Strategy):
    """fastai's ``fine_tune``: head alone for ``freeze_epochs``, then all with discriminative lrs."""

    name = "gradual"
    options = (Option("freeze_epochs", int, 1, "gradual: head-only epochs before unfreezing", low=0, high=100_000,
                      wanted="head-only epochs ≥ 0"),)
    description = 'head only for freeze_epochs, then everything with layer-wise lr decay (fastai fine_tune)'

    def layer_decay(self) -> float | None:
        return self.cfg.layer_decay or 0.75

    def on_epoch_start(self, model: TransferModel, epoch: int) -> None:
        set_trainable(model.backbone, epoch >= self.cfg.freeze_epochs)
        set_trainable(model.head, True)


@register_strategy
class LPFT(Strategy):
    """Probe the head on frozen features, then fine-tune all of it at the backbone's small lr."""

    name = "lp-ft"
    description = 'linear probe first, then fine-tune everything from the probed head (Kumar et al. 2022)'
    probe_first = True

    def head_lr(self) -> float:
        return self.cfg.lr * self.cfg.backbone_lr_mult


@register_strategy
class LoRA(Strategy):
    """Low-rank adapters through peft; only the adapters and the head train."""

    name = "lora"
    adapters_only = True
    options = (Option("lora_rank", int, 8, "lora: the adapters' rank", low=1, high=4096, wanted="a rank ≥ 1"),
               Option("lora_alpha", float, 16.0, "lora: the adapters' scale α (their update is scaled by α / rank)",
                      low=1e-6, high=1e6, wanted="a scale > 0"))
    description = 'low-rank adapters (peft) on attention projections; backbone weights frozen'

    def prepare(self, model: TransferModel) -> None:
        add_lora(model.backbone, self.cfg)
        set_trainable(model.head, True)

    def finish(self, model: TransferModel) -> None:
        """Merge the adapters into their base weights: predict needs no peft."""
        merge_lora(model.backbone)

    def backbone_lr_mult(self) -> float:
        return 1.0  # adapters start at zero: they need the full learning rate

    def param_groups(self, model: TransferModel) -> list[dict]:
        adapters = [p for n, p in model.backbone.named_parameters() if p.requires_grad]
        return [{"params": adapters, "lr": self.cfg.lr, "name": "lora"},
                {"params": list(model.head.parameters()), "lr": self.cfg.lr, "name": "head"}]


class CosinePairs(Task):
    """SetFit's objective over every pair in a batch: the cosine similarity of the two embeddings is pulled to 1
    for two items of one class and to 0 for two classes (mean squared error). It meets the loop's share of the
    task contract (loss; the base per-batch statistics and epoch row)."""

    def loss(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = F.normalize(embeddings.float(), dim=-1)
        same = (targets[:, None] == targets[None]).float()
        pairs = ~torch.eye(len(targets), dtype=torch.bool, device=z.device)
        return ((z @ z.T - same)[pairs] ** 2).mean() if len(targets) > 1 else z.sum() * 0


@register_strategy
class Contrastive(Strategy):
    """Contrastive fine-tuning of the encoder on in-batch pairs, then the probe's logistic head on the adapted
    features (SetFit, Tunstall et al. 2022, with pairs formed inside each batch instead of sampled one by one).
    The run takes at least ``min_steps`` steps and ``min_passes`` passes over the data (an epoch draws that
    many items), so tiny sets adapt too; a run of the minimum steps trains at the configured peak (2e-4 by
    default), a longer one at half of it (the log says so). Where the minimum passes would take more than
    ``long_run`` steps, the run is stretched: passes × s and the peak ÷ s, s = steps / ``long_run`` up to
    ``max_stretch`` (the same distance in smaller steps: 64 per class, 480 steps at 2.5e-5 instead of 120 at 1e-4,
    0.974 ± 0.003 against 0.970 ± 0.008 over 10 development draws; SetFit 0.971 on 5 of them, where this had 0.972).
    Batches are drawn at random, never grouped by length (``length_batches``): over 15 passes the grouped ones
    paired a text with its own copies (12–18 % of pairs) and with its own class (66–85 %, against 0 and ~50 %);
    random batches lifted 9 development draws at 8 per class from 0.944 to 0.958 (16: 0.965 both; 64, 5 draws:
    0.975 against 0.974) for 1.25–1.6× the time of the less padded batches.
    Chosen on a development split of SMS spam drawn from the training pool (never the test split), 9 draws at 8 and
    16 per class, 3 at 64: 0.943 / 0.965 / 0.976 accuracy, against 0.943 / 0.955 / 0.976 for 10 passes at 2e-4
    throughout, 0.931 at 8 for 1e-4 throughout, 0.959 at 16 for 2e-4 over the same 30 steps. Tried there and
    dropped: a peak scaled as 1 / steps (64 per class: 0.968 / 0.966), batches of 32 (16 per class: 0.943),
    weight averaging with the loaded encoder (WiSE-FT, 0.958), other C for the head or a nearest-centroid head
    (within 0.002: the features decide). At 64 per class, before the stretch (5 draws, 0.973 ± 0.006), none of
    these beat the unstretched run: twice the passes at 1e-4, batches of 32, a 2e-4 peak, training only the upper
    layers, token dropout, other cosine targets for negatives (0.966–0.974). A supervised-contrastive
    (softmax, τ 0.1) loss: 0.972 against 0.970 over 10 draws at 64, but 0.934 / 0.956 at 8 / 16 per class; with the
    stretch, 0.9695 against 0.9755 on 4 draws at 64. Also tried at 64 with the stretch: weights averaged over the
    last half of the steps (0.9753 against 0.9755, 4 draws), a second view of each text under another dropout mask
    (0.9764 against 0.9762, 5 draws), a cross-entropy phase on the whole model after the pairs (1 draw, no change:
    its loss is < 5e-5 from the first step, the adapted features already separate the training texts), batches of
    8 (0.9746 against 0.9746, 5 draws), a stretch of up to 6 (0.974 against 0.9737, 3 draws), L2-SP 0.5 (0.967
    against 0.974, 1 draw)."""

    name = "contrastive"
    description = "SetFit's recipe: the encoder learns from every same/different-class pair in each batch, then a logistic head on its features (the default for small text sets)"
    defaults = {"backbone_lr_mult": 0.2}  # 2e-4 peak at the text lr 1e-3 (SMS spam, 8–16 per class)
    probe_after = True
    uses_val = False  # val accuracy needs the head, which is fitted after the loop
    length_batches = False  # pairs of length neighbours over many passes: repeats of one text, one class mostly
    min_steps, min_passes = 15, 15
    long_run, max_stretch = 30, 4  # steps from which a run is stretched; the most it is stretched

    def stretch(self, steps: int) -> float:
        """Factor on the passes of a run that would take ``steps`` steps at the minimum passes."""
        return min(max(steps / self.long_run, 1.0), self.max_stretch)

    def peak_scale(self, total_steps: int) -> float:
        """The configured peak for a run of the minimum steps; half of it for longer runs, divided by their stretch
        (a run stretched s times takes s · s · ``long_run`` steps, so it was √(steps · ``long_run``) unstretched)."""
        return 1.0 if total_steps <= self.min_steps else 0.5 / self.stretch(math.sqrt(total_steps * self.long_run))

    def prepare(self, model: TransferModel) -> None:
        """The encoder trains, except its input stage (a text encoder's token embeddings: half of MiniLM's weights,
        whose dense gradient and AdamW update cost 0.5 s of a 6 s run at 8 texts per class, for the same accuracy on
        the development split: 0.970 / 0.956 frozen vs 0.970 / 0.958 trained at 8 / 16 per class)."""
        set_trainable(model.backbone, True)
        set_trainable(model.head, False)
        stages = model.backbone.stages()
        if len(stages) > 1:
            set_stages_trainable(model.backbone, stages[:1], False)

    def train_module(self, model: TransferModel) -> nn.Module:
        return model.backbone

    def objective(self, task) -> CosinePairs:
        return CosinePairs()

    def epoch_samples(self, n: int, batch_size: int, epochs: int) -> int:
        passes = self.min_passes * self.stretch(math.ceil(self.min_passes * n / batch_size))
        return max(n, math.ceil(self.min_steps / epochs) * batch_size, math.ceil(passes * n / epochs))


def check_supported(task, strategy) -> None:
    """Refuse a strategy the task cannot train with, naming the registered strategies it can."""
    if task.supports(strategy):
        return
    able = [name for name, cls in _STRATEGIES.items() if task.supports(cls)]
    raise ConfigError(f"Strategy {strategy.name} does not apply to {task.title or task.name} ({task.unsupported})",
                      f"one of {', '.join(able)}", task.unsupported_fix)


def get_strategy(cfg: RunConfig) -> Strategy:
    """The run's own strategy object for ``cfg.strategy``; unknown names list the registered ones."""
    for cls in _STRATEGIES.values():
        args = cls.parse(cfg.strategy)
        if args is not None:
            return cls(cfg, *args)
    raise ConfigError(f"Unknown strategy '{cfg.strategy}'", f"one of {', '.join(_STRATEGIES)}",
                      "Run `transferkit train --help` for what each does")
