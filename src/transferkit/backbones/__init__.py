"""Pretrained backbones by ``source:name``: timm, random, packaged, file, run, hf (text and Whisper)."""

from . import _file, _hf, _packaged, _speech, _timm, _torchvision, _whisper  # noqa: F401  (register sources, kinds, loaders)
from ._base import Backbone
from ._file import read_weights
from ._lora import add_lora, merge_lora
from ._packaged import lukemelas_to_timm, timm_block_names
from ._registry import (PACKAGED, PackagedModel, backbone_from_spec, create_backbone, first_installed, register_kind,
                        register_source, sources)

__all__ = [
    "Backbone", "PACKAGED", "add_lora", "first_installed", "merge_lora", "PackagedModel", "backbone_from_spec", "create_backbone", "lukemelas_to_timm",
    "read_weights", "register_kind", "register_source", "sources", "timm_block_names",
]
