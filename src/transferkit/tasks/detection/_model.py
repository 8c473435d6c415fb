"""Faster R-CNN (torchvision's RPN, RoI heads, box coder, NMS and resize transform) on any transferkit backbone
that has stages: an FPN over the stride-8/16/32 outputs its ``feature_info`` names."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...errors import ConfigError
from ._data import split_targets

#: stage strides the FPN reads (coarser levels come from max-pooling the last one, as torchvision does)
LEVELS = (8, 16, 32)


def pick_stages(backbone, name: str) -> list[dict]:
    """The last stage at each stride of ``LEVELS`` (fewer if the backbone stops earlier)."""
    info = backbone.feature_info()
    picked = {f["reduction"]: f for f in info if f["reduction"] in LEVELS}
    if len(picked) < 2:
        raise ConfigError(f"Backbone {name} has no feature stages a detector can read "
                          f"({'no feature_info' if not info else 'strides ' + ', '.join(str(f['reduction']) for f in info)})",
                          "a convolutional backbone with stride-8/16/32 stages",
                          "Use packaged:efficientnet_lite0 (offline), timm:<CNN> such as timm:resnet50, or "
                          "tv:fasterrcnn_mobilenet_v3_large_fpn (online)")
    return [picked[r] for r in sorted(picked)]


class StageOutputs:
    """Forward hooks that keep the outputs of the named backbone modules during one forward pass."""

    def __init__(self, backbone: nn.Module, modules: list[str]):
        self.out: dict[str, torch.Tensor] = {}
        named = dict(backbone.named_modules())
        self.names = modules
        for m in modules:
            named[m].register_forward_hook(self._keep(m))

    def _keep(self, name: str):
        def hook(_module, _inputs, output):
            self.out[name] = output

        return hook


class Detector(nn.Module):
    """``backbone`` (the transferkit backbone, frozen or trained by the strategy) and ``head`` (FPN + RPN + RoI
    heads, all new). In training ``forward`` returns torchvision's loss dict; in eval, per image
    ``{boxes (x1 y1 x2 y2 in original pixels), scores, labels (1-based; 0 is background)}``."""

    def __init__(self, backbone, num_classes: int, min_size: int, max_size: int, fpn_channels: int = 128):
        from torchvision.models.detection.anchor_utils import AnchorGenerator  # heavy: loaded on first use
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.roi_heads import RoIHeads
        from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
        from torchvision.ops import MultiScaleRoIAlign
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.backbone = backbone
        stages = pick_stages(backbone, backbone.name)
        self.__dict__["stage_outputs"] = StageOutputs(backbone, [s["module"] for s in stages])
        levels = [str(i) for i in range(len(stages))]
        sizes = tuple((32 * 2 ** i, int(45 * 2 ** i)) for i in range(len(stages) + 1))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        rpn = RegionProposalNetwork(anchors, RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
                                    0.7, 0.3, 256, 0.5, dict(training=1000, testing=500),
                                    dict(training=500, testing=300), 0.7)
        box_head = TwoMLPHead(fpn_channels * 7 * 7, 512)
        roi_heads = RoIHeads(MultiScaleRoIAlign(levels, 7, 2), box_head, FastRCNNPredictor(512, num_classes + 1),
                             0.5, 0.5, 256, 0.25, None, 0.05, 0.5, 100)
        self.head = nn.ModuleDict({
            "fpn": FeaturePyramidNetwork([s["num_chs"] for s in stages], fpn_channels, LastLevelMaxPool()),
            "rpn": rpn, "roi_heads": roi_heads})
        mean, std = backbone.pretrained_cfg.get("mean", (0.485, 0.456, 0.406)), backbone.pretrained_cfg.get("std", (0.229, 0.224, 0.225))
        self.transform = resize_transform(min_size, max_size, mean, std)

    @staticmethod
    def for_backbone(backbone, num_classes: int, min_size: int, max_size: int) -> "Detector":
        """A whole pretrained detector where the backbone brings one (``tv:``), else new heads on its stages."""
        if getattr(backbone, "detector", None) is not None:
            return PretrainedDetector(backbone, num_classes, min_size, max_size)
        return Detector(backbone, num_classes, min_size, max_size)

    def features(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        hooks = self.__dict__["stage_outputs"]
        hooks.out.clear()
        self.backbone.forward_features(images)
        feats = OrderedDict((str(i), hooks.out[name]) for i, name in enumerate(hooks.names))
        hooks.out.clear()
        return self.head["fpn"](feats)

    def forward(self, x: dict):
        images = [x["images"][k, :, :h, :w].float().div_(255) for k, (h, w) in enumerate(x["sizes"].tolist())]
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in split_targets(x)] if self.training else None
        batch, targets = self.transform(images, targets)
        feats = self.features(batch.tensors)
        proposals, rpn_losses = self.head["rpn"](batch, feats, targets)
        detections, roi_losses = self.head["roi_heads"](feats, proposals, batch.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(detections, batch.image_sizes, [tuple(s) for s in x["orig_sizes"].tolist()])


def resize_transform(min_size: int, max_size: int, mean, std):
    """torchvision's resize + normalise. Scale jitter while training: a shorter side drawn from 0.8–1.0 × min_size
    (torchvision picks one per image); evaluation uses min_size itself, the size images are cached at."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform  # heavy: loaded on first use

    # multiples of 32 below min_size, never under 32 (a small --image-size rounded them to 0) nor above min_size
    jitter = tuple(sorted({min(min_size, max(32, int(min_size * f) // 32 * 32)) for f in (0.8, 0.875, 0.95)}
                          | {min_size}))
    return GeneralizedRCNNTransform(jitter, max_size, list(mean), list(std))


class PretrainedDetector(Detector):
    """A torchvision detector transferred whole (``tv:`` backbones): its trunk is ``backbone``; its FPN, RPN and RoI
    heads are ``head``, with the box predictor replaced for the new classes."""

    def __init__(self, backbone, num_classes: int, min_size: int, max_size: int):
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor  # heavy: loaded on first use

        nn.Module.__init__(self)
        det = backbone.detector
        det.roi_heads.box_predictor = FastRCNNPredictor(det.roi_heads.box_predictor.cls_score.in_features, num_classes + 1)
        self.backbone = backbone
        self.head = nn.ModuleDict({"fpn": det.backbone.fpn, "rpn": det.rpn, "roi_heads": det.roi_heads})
        self.transform = resize_transform(min_size, max_size, det.transform.image_mean, det.transform.image_std)

    def features(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.head["fpn"](self.backbone.forward_features(images))
