"""LoRA adapters (peft) on a backbone's attention projections, merged back before saving."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError

# Attention projections by family: timm ViT (qkv), BERT-style (query/value), LLaMA/OPT-style (q_proj/v_proj).
TARGETS = ("qkv", "query", "value", "q_proj", "v_proj")


def lora_targets(module: nn.Module) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in module.named_modules()
                   if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in TARGETS})


def add_lora(backbone: nn.Module, cfg, dropout: float = 0.05) -> None:
    """Inject LoRA adapters in place; freeze everything but the adapters."""
    try:
        from peft import LoraConfig, inject_adapter_in_model  # optional (lora extra)
    except ImportError:
        raise ConfigError("Strategy lora needs the peft package", None, "pip install 'transferkit[lora]'") from None
    targets = lora_targets(backbone)
    if not targets:
        raise ConfigError(f"Strategy lora found no attention projections ({', '.join(TARGETS)}) in {cfg.backbone}",
                          "an attention backbone (ViT-style or a text transformer)",
                          "Use finetune, partial:K or lp-ft for convolutional backbones")
    rank = int(cfg.extra.get("lora_rank", cfg.lora_rank))  # extra: run folders saved before the options were declared
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=float(cfg.extra.get("lora_alpha", cfg.lora_alpha)),
                                       lora_dropout=dropout, target_modules=targets), backbone)
    for n, p in backbone.named_parameters():
        p.requires_grad_("lora_" in n)


def merge_lora(backbone: nn.Module) -> None:
    """Fold adapters into their base weights and remove them: the saved model is a plain backbone."""
    try:
        from peft.tuners.lora import LoraLayer  # optional (lora extra)
    except ImportError:
        return
    for name, module in list(backbone.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            setattr(parent, child, module.get_base_layer())
