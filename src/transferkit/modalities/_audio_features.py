"""Per-use audio ops: crop or pad to the clip length, augment, log-mel spectrogram.

The log-mel is Whisper's (400-sample Hann window, hop 160 at 16 kHz, Slaney mel filters from
transformers' ``mel_filter_bank``, log10, an 8-decade floor below the clip's peak, then (x + 4) / 4),
so a packaged Whisper encoder sees exactly what it was trained on; a test checks it against
transformers' ``WhisperFeatureExtractor``. Image backbones get the same spectrogram with more mel bands,
resized to a square and repeated over three channels (the ImageNet-on-spectrograms recipe of PANNs and AST).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=8)
def mel_filters(n_mels: int, sample_rate: int, n_fft: int) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) Slaney-normalised mel filters, as Whisper's feature extractor builds them."""
    from transformers.audio_utils import mel_filter_bank  # optional (text/audio extra), heavy

    bank = mel_filter_bank(num_frequency_bins=1 + n_fft // 2, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                           mel_scale="slaney")
    return torch.from_numpy(np.asarray(bank, dtype=np.float32))


def log_mel(wave: torch.Tensor, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400,
            hop: int = 160) -> torch.Tensor:
    """Whisper's log-mel of a mono waveform (N,) → (n_mels, N // hop)."""
    window = torch.hann_window(n_fft)
    stft = torch.stft(wave.float(), n_fft, hop, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = mel_filters(n_mels, sample_rate, n_fft).T @ power
    spec = torch.clamp(mel, min=1e-10).log10()
    spec = torch.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


def input_contract(dc: dict) -> dict:
    """What an exported audio model's consumer must compute from a clip (waveform or log-mel), from a data config."""
    if not dc["n_mels"]:
        return {"input": "waveform", "sample_rate": dc["sample_rate"],
                "normalize": "zero mean, unit variance per clip" if dc.get("normalize") else "none"}
    return {"input": "log-mel spectrogram", "sample_rate": dc["sample_rate"], "n_mels": dc["n_mels"], "n_fft": 400,
            "hop_length": 160, "log_mel": "Whisper's: log10(max(mel, 1e-10)), floor at peak − 8, then (x + 4) / 4"}


def _uniform(lo: float, hi: float) -> float:
    return float(torch.empty(()).uniform_(lo, hi))


def _randint(n: int) -> int:
    return int(torch.randint(0, max(1, n), ()))


def random_gain(wave: torch.Tensor, db: float = 6.0) -> torch.Tensor:
    """The waveform at a random gain in ±``db`` dB."""
    return wave * 10 ** (_uniform(-db, db) / 20)


def standardise(wave: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per clip (wav2vec2's feature extractor)."""
    return (wave - wave.mean()) / torch.sqrt(wave.var(correction=0) + 1e-7)


@dataclass(frozen=True)
class AudioOps:
    """Waveform at ``sample_rate`` → the model's input tensor.

    Args:
        clip_samples: every clip is cropped or zero-padded to this many samples.
        augment: ``none`` (centre crop / centre pad: the eval pipeline), ``light`` (random crop or
            placement in the padding, ±6 dB gain), ``standard`` (light + SpecAugment: two frequency
            and two time masks).
        n_mels: mel bands; 0 for the waveform itself (wav2vec2-style encoders).
        image_size: 0 for a (n_mels, frames) spectrogram (speech encoders); else a (3, S, S) image.
        normalize: waveform only: zero mean, unit variance per clip (as wav2vec2's feature extractor).
    """

    clip_samples: int
    augment: str = "none"
    n_mels: int = 80
    sample_rate: int = 16000
    image_size: int = 0
    normalize: bool = False

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.n_mels:  # waveform: crop, normalise the clip itself, then pad with zeros (as wav2vec2's extractor)
            wave = self.fit_length(wave) if len(wave) > self.clip_samples else wave
            if self.augment != "none":
                wave = random_gain(wave)
            if self.normalize:
                wave = standardise(wave)
            return self.fit_length(wave)
        wave = self.fit_length(wave)
        if self.augment != "none":
            wave = random_gain(wave)
        spec = log_mel(wave, self.n_mels, self.sample_rate)
        if self.augment == "standard":
            spec = spec_augment(spec)
        if self.image_size:
            spec = F.interpolate(spec[None, None], size=(self.image_size, self.image_size), mode="bilinear",
                                 align_corners=False)[0].expand(3, -1, -1).contiguous()
        return spec

    def fit_length(self, wave: torch.Tensor) -> torch.Tensor:
        """Crop (random in training, centred otherwise) or zero-pad (random placement in training)."""
        n, c = len(wave), self.clip_samples
        random = self.augment != "none"
        if n >= c:
            start = _randint(n - c + 1) if random else (n - c) // 2
            return wave[start:start + c]
        left = _randint(c - n + 1) if random else (c - n) // 2
        return F.pad(wave, (left, c - n - left))


def spec_augment(spec: torch.Tensor, masks: int = 2, max_frac: float = 0.1) -> torch.Tensor:
    """SpecAugment (Park et al. 2019): ``masks`` frequency and time bands set to the spectrogram's mean."""
    spec = spec.clone()
    fill = spec.mean()
    for dim in (0, 1):
        size = spec.shape[dim]
        for _ in range(masks):
            width = _randint(max(1, math.floor(size * max_frac)) + 1)
            start = _randint(size - width + 1)
            spec.narrow(dim, start, width).fill_(fill)
    return spec
