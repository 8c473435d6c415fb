"""torchvision's COCO-pretrained detectors by name (``tv:<name>``): the whole detector transfers — trunk, FPN, RPN
and RoI heads — and the detection task replaces only the box predictor for the user's classes."""

from __future__ import annotations

import difflib
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import BackboneError
from ._base import Backbone
from ._registry import PACKAGED, register_kind, register_source

DETECTORS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
             "fasterrcnn_mobilenet_v3_large_320_fpn")


class DetectorBackbone(Backbone):
    """The trunk of a torchvision detector (``model``: its ``backbone.body``, which returns a dict of stage outputs).
    The rest of the detector stays outside the module tree in ``detector``, for the detection task to take its FPN,
    RPN and RoI heads."""

    def __init__(self, detector, name: str):
        t = detector.transform
        cfg = {"mean": tuple(t.image_mean), "std": tuple(t.image_std), "input_size": (3, t.min_size[-1], t.min_size[-1])}
        super().__init__(detector.backbone.body, {"kind": "tv-detector", "arch": name}, cfg, None, f"tv:{name}")
        self.__dict__["detector"] = detector

    @property
    def num_features(self) -> int:
        return int(self.detector.backbone.out_channels)

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return list(self.model(x).values())[-1].mean((2, 3))

    def feature_info(self) -> list[dict]:
        return []  # the detector's own FPN reads every stage the trunk returns

    def stages(self) -> list[list[str]]:
        """Parameters grouped by the trunk's top-level children, input → output."""
        groups: dict[str, list[str]] = {}
        for n, _ in self.named_parameters():
            groups.setdefault(n.split(".")[1], []).append(n)
        return list(groups.values())

    def fresh(self) -> "DetectorBackbone":
        return build(self.spec["arch"], pretrained=False)


def _check(name: str) -> None:
    if name not in DETECTORS:
        close = difflib.get_close_matches(name, DETECTORS, n=1)
        raise BackboneError(f"'{name}' is not a torchvision detector transferkit loads", f"one of {', '.join(DETECTORS)}",
                            f"Did you mean tv:{close[0]}?" if close else "Use tv:fasterrcnn_mobilenet_v3_large_fpn")


def build(name: str, pretrained: bool) -> DetectorBackbone:
    from torchvision.models import detection  # heavy: loaded on first use

    _check(name)
    kw = {"weights": "DEFAULT"} if pretrained else {"weights": None, "weights_backbone": None}
    return DetectorBackbone(getattr(detection, name)(**kw), name)


@register_source("tv", "torchvision's COCO-pretrained Faster R-CNN detectors, for --task detect (needs internet)")
def load_tv(name: str, **_) -> DetectorBackbone:
    _check(name)
    try:
        return build(name, pretrained=True)
    except Exception as exc:  # download errors come in many types (URLError, OSError, HTTP)
        raise BackboneError(
            f"Could not download torchvision's weights for tv:{name} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no details'}); download.pytorch.org is unreachable (offline?)",
            "internet access, or weights available offline",
            f"Work offline with packaged:{next(iter(PACKAGED))} (ImageNet; the detector's heads train from scratch), or a "
            f"local checkpoint: --backbone file:fasterrcnn.pth --arch tv:{name}") from None


def load_tv_file(path: Path, name: str, read_weights, load_into) -> DetectorBackbone:
    """``file:<checkpoint> --arch tv:<name>``: a local torchvision detector state dict (loaded weights-only)."""
    backbone = build(name, pretrained=False)
    load_into(backbone.detector, read_weights(path), f"Weights file {path}", ignore=("roi_heads.box_predictor.",))
    return backbone


@register_kind("tv-detector")
def tv_from_spec(spec: dict, pretrained_cfg: dict, run_dir: Path | None = None) -> DetectorBackbone:
    return build(spec["arch"], pretrained=False)
