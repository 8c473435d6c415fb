"""Pretrained backbones by ``source:name``: timm, random, packaged, file, run (and hf for text)."""

from . import _file, _hf, _packaged, _timm  # noqa: F401  (register sources)
from ._base import Backbone
from ._file import backbone_from_spec, read_weights
from ._packaged import lukemelas_to_timm, timm_block_names
from ._registry import PACKAGED, PackagedModel, create_backbone, register_source, sources

__all__ = [
    "Backbone", "PACKAGED", "PackagedModel", "backbone_from_spec", "create_backbone", "lukemelas_to_timm",
    "read_weights", "register_source", "sources", "timm_block_names",
]
