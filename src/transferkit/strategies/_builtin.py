"""The strategies every task can use: fine-tuning (whole, partial, gradual, LP-FT), probing, frozen, LoRA, scratch
and zero-shot."""

from __future__ import annotations

from ..backbones import add_lora, merge_lora
from ..config import Option, RunConfig
from ..errors import ConfigError
from ..heads import TransferModel
from ._base import Strategy, register_strategy, set_stages_trainable, set_trainable


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
                      wanted="head-only epochs ≥ 0", search=("int", 0, 3)),)
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
    options = (Option("lora_rank", int, 8, "lora: the adapters' rank", low=1, high=4096, wanted="a rank ≥ 1",
                      search=("choice", 4, 8, 16)),
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
