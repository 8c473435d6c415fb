"""Segmentation decoders from segmentation-models-pytorch (U-Net, FPN, DeepLabV3+) fed by the stages of any
transferkit backbone: forward hooks keep the last output at each stride 2, 4, 8, 16, 32 (``feature_info``), which
is what an smp encoder hands its decoder."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ConfigError

STRIDES = (2, 4, 8, 16, 32)
HEADS = ("unet", "fpn", "deeplabv3plus")


def pick_stages(backbone) -> list[dict]:
    """The last module at each stride of ``STRIDES``; a backbone without all five cannot feed these decoders."""
    info = backbone.feature_info()
    picked = {f["reduction"]: f for f in info if f["reduction"] in STRIDES}
    if len(picked) < len(STRIDES):
        have = ", ".join(str(f["reduction"]) for f in info) if info else "no feature_info"
        raise ConfigError(f"Backbone {backbone.name} has no feature stages at strides 2, 4, 8, 16 and 32 ({have})",
                          "a convolutional backbone (U-Net, FPN and DeepLabV3+ read five stages)",
                          "Use packaged:efficientnet_lite0 (offline), or timm:<CNN> such as timm:resnet34 (online)")
    return [picked[r] for r in STRIDES]


def build_decoder(head: str, channels: list[int], num_classes: int) -> tuple[nn.Module, nn.Module]:
    """smp's decoder and segmentation head for encoder ``channels`` (input first, then strides 2 … 32)."""
    from segmentation_models_pytorch.base import SegmentationHead  # heavy: loaded on first use
    from segmentation_models_pytorch.base import initialization as init

    if head == "unet":
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

        dec = UnetDecoder(encoder_channels=channels, decoder_channels=(256, 128, 64, 32, 16), n_blocks=5,
                          use_norm="batchnorm", add_center_block=False, attention_type=None, interpolation_mode="nearest")
        seg = SegmentationHead(16, num_classes, kernel_size=3)
    elif head == "fpn":
        from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder

        dec = FPNDecoder(encoder_channels=channels, encoder_depth=5, pyramid_channels=256, segmentation_channels=128,
                         dropout=0.2, merge_policy="add")
        seg = SegmentationHead(dec.out_channels, num_classes, kernel_size=1, upsampling=4)
    elif head == "deeplabv3plus":
        from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder

        dec = DeepLabV3PlusDecoder(encoder_channels=channels, encoder_depth=5, out_channels=256, atrous_rates=(12, 24, 36),
                                   output_stride=16, aspp_separable=True, aspp_dropout=0.5)
        # the backbone is not dilated: ASPP reads the stride-32 stage, so its output is upsampled 8× (not 4×) to the
        # stride-4 skip
        dec.up = nn.Upsample(mode="bilinear", scale_factor=8, align_corners=True)
        seg = SegmentationHead(256, num_classes, kernel_size=1, upsampling=4)
    else:
        raise ConfigError(f"Unknown segmentation --head {head!r}", f"one of {', '.join(HEADS)}",
                          "Leave --head out for U-Net")
    init.initialize_decoder(dec)
    init.initialize_head(seg)
    return dec, seg


def _keep_output(module, _inputs, output) -> None:
    module.__dict__["_stage_output"] = output


class Segmenter(nn.Module):
    """``backbone`` (the transferkit backbone; the strategy decides what trains) and ``head`` (smp decoder +
    segmentation head, new). Input: RGB images (B, 3, H, W) with values 0–255 (uint8 or float), any H and W (padded
    to a multiple of 32 inside); output: logits (B, classes, H, W)."""

    def __init__(self, backbone, num_classes: int, head: str = "unet"):
        super().__init__()
        self.backbone = backbone
        stages = pick_stages(backbone)
        self.names = [s["module"] for s in stages]
        for m in self.names:  # a plain function writing onto the module it is called on: copies of the model work
            backbone.get_submodule(m).register_forward_hook(_keep_output)
        decoder, seg = build_decoder(head, [3] + [s["num_chs"] for s in stages], num_classes)
        self.head = nn.ModuleDict({"decoder": decoder, "segmentation": seg})
        cfg = backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255,
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        x = (images.float() - self.mean) / self.std
        ph, pw = (32 - h % 32) % 32, (32 - w % 32) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        self.backbone.forward_features(x)
        feats = [x] + [self.backbone.get_submodule(n).__dict__.pop("_stage_output") for n in self.names]
        logits = self.head["segmentation"](self.head["decoder"](feats))
        return logits[..., :h, :w]
