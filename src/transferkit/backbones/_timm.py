"""timm models: ``timm:<name>`` (pretrained, from the hub) and ``random:<name>`` (random init)."""

from __future__ import annotations

import copy
import difflib

import torch

from ..errors import BackboneError
from ._base import Backbone
from ._registry import PACKAGED, register_source

OFFLINE_FIX = (
    "Work offline with a packaged backbone ({}), a local weights file "
    "(--backbone file:weights.safetensors --arch <timm name>), or connect to the internet"
)


def check_arch(arch: str) -> str:
    """Return the architecture part of a timm name (``resnet50.a1_in1k`` → ``resnet50``), or fail clearly."""
    import timm  # heavy: loaded on first use

    base = arch.split(".", 1)[0]
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=3)
        raise BackboneError(
            f"'{arch}' is not a timm architecture",
            "a name from timm.list_models(), e.g. resnet50, vit_small_patch16_224, efficientnet_b0",
            f"Did you mean {', '.join(close)}?" if close else "Run `transferkit models` for the list of sources",
        )
    return base


def from_timm_model(model: torch.nn.Module, spec_arch: str) -> Backbone:
    """Split a timm classifier into backbone (num_classes=0) and its source head."""
    source_head = None
    if getattr(model, "num_classes", 0):
        source_head = copy.deepcopy(model.get_classifier()).eval()
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    model.reset_classifier(0)
    return Backbone(model, {"kind": "timm", "arch": spec_arch}, cfg, source_head)


@register_source("timm", "any timm model with pretrained weights from the Hugging Face hub (needs internet)")
def load_timm(name: str, **_) -> Backbone:
    import timm  # heavy: loaded on first use

    arch = check_arch(name)
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as exc:  # hub errors come in many types (OSError, HTTP, LocalEntryNotFound)
        packaged = ", ".join(f"packaged:{k}" for k, m in PACKAGED.items() if m.arch.startswith("tf_efficientnet"))
        raise BackboneError(
            f"Could not download pretrained weights for timm:{name} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no details'}); the hub is unreachable "
            "(offline?) or the weights do not exist",
            "internet access to huggingface.co, or weights available offline",
            OFFLINE_FIX.format(packaged),
        ) from None
    return from_timm_model(model, arch)


@register_source("random", "a timm architecture with random weights (the control for ranking; no download)")
def load_random(name: str, **_) -> Backbone:
    import timm  # heavy: loaded on first use

    arch = check_arch(name)
    model = timm.create_model(arch, pretrained=False)
    return from_timm_model(model, arch)
