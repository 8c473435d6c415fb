"""Waveform speech encoders from Hugging Face (wav2vec2, HuBERT, WavLM …): ``hf:<id or folder>``.

They take the raw 16 kHz waveform (``input_values``), normalised to zero mean and unit variance per
clip when their feature extractor says so; the features are the last hidden states, mean-pooled.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import BackboneError
from ._base import Backbone
from ._registry import register_kind


class WaveformBackbone(Backbone):
    """(B, samples) waveform → (B, hidden) mean-pooled encoder states."""

    modality = "audio"
    train_defaults = {"lr": 1e-3, "backbone_lr_mult": 0.05}  # as for other transformers

    def __init__(self, model, spec: dict, sample_rate: int = 16000, normalize: bool = True, name: str = ""):
        pretrained = {"audio": {"input": "waveform", "sample_rate": sample_rate, "normalize": normalize}}
        super().__init__(model, spec, pretrained, None, name)

    @property
    def num_features(self) -> int:
        return int(self.model.config.hidden_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=x).last_hidden_state

    def frame_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames for waveforms of ``input_lengths`` samples (the convolutional front's strides)."""
        return self.model._get_feat_extract_output_lengths(input_lengths).long()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(1)

    def feature_info(self) -> list[dict]:
        stride = 1
        for s in getattr(self.model.config, "conv_stride", [320]):
            stride *= int(s)
        return [{"num_chs": self.num_features, "reduction": stride, "module": "model"}]

    def stages(self) -> list[list[str]]:
        """The convolutional front (and projection), one stage per transformer layer, then the rest."""
        groups: dict[int, list[str]] = {}
        for n, _ in self.named_parameters():
            m = re.search(r"\.layers\.(\d+)\.", n)
            key = int(m.group(1)) if m else (-1 if "feature" in n or "masked_spec_embed" in n else 10**6)
            groups.setdefault(key, []).append(n)
        return [groups[k] for k in sorted(groups)]

    def fresh(self) -> "WaveformBackbone":
        from transformers import AutoModel  # optional (text/audio extra), heavy

        a = self.pretrained_cfg["audio"]
        return WaveformBackbone(AutoModel.from_config(self.model.config), self.spec, a["sample_rate"], a["normalize"],
                                f"random:{self.name}")

    def save_extra(self, run_dir) -> None:
        folder = Path(run_dir) / "backbone"
        folder.mkdir(exist_ok=True)
        self.model.config.save_pretrained(folder)


def waveform_from_hf(model, name: str) -> WaveformBackbone:
    sample_rate, normalize = 16000, True
    try:
        from transformers import AutoFeatureExtractor  # optional (text/audio extra), heavy

        fe = AutoFeatureExtractor.from_pretrained(name)
        sample_rate, normalize = int(fe.sampling_rate), bool(getattr(fe, "do_normalize", True))
    except Exception:  # no preprocessor_config.json: the wav2vec2 defaults
        pass
    if sample_rate != 16000:
        raise BackboneError(f"hf:{name} expects {sample_rate} Hz audio", "a 16 kHz speech encoder",
                            "Use a 16 kHz checkpoint (wav2vec2, HuBERT and WavLM base models are)")
    spec = {"kind": "hf-audio", "arch": model.config.model_type, "normalize": normalize}
    return WaveformBackbone(model, spec, sample_rate, normalize)


@register_kind("hf-audio")
def rebuild_waveform(spec: dict, pretrained_cfg: dict, run_dir=None) -> WaveformBackbone:
    from transformers import AutoConfig, AutoModel  # optional (text/audio extra), heavy

    folder = Path(run_dir) / "backbone" if run_dir else None
    if folder is None or not folder.is_dir():
        raise BackboneError(f"Run folder {run_dir} lacks backbone/ (the encoder's config)", None, "Train the run again")
    return WaveformBackbone(AutoModel.from_config(AutoConfig.from_pretrained(folder)), spec,
                            pretrained_cfg["audio"]["sample_rate"], pretrained_cfg["audio"]["normalize"])
