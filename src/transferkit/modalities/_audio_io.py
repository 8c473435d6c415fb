"""Reading audio: libsndfile (``soundfile``) for every format it knows, ``soxr`` to resample, mono float32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import TransferkitError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
SAMPLE_RATE = 16000
MIN_SECONDS = 0.01  # shorter than this holds no usable signal (a 25 ms analysis window)


def _soundfile():
    try:
        import soundfile  # optional (audio extra)
    except ImportError:
        raise TransferkitError("Audio needs the soundfile and soxr packages", None,
                               "pip install 'transferkit[audio]'") from None
    return soundfile


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples float32 of shape (frames, channels), sample rate) — any format libsndfile reads."""
    sf = _soundfile()
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(sr)


def to_mono(data: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Average the channels, resample to ``target`` Hz (soxr, high quality)."""
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if sr != target:
        import soxr  # optional (audio extra)

        mono = soxr.resample(mono, sr, target, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


@dataclass(frozen=True)
class AudioDecode:
    """The cacheable decode stage: (samples, rate) → mono float32 tensor at ``sample_rate``."""

    sample_rate: int = SAMPLE_RATE

    def __call__(self, decoded: tuple[np.ndarray, int]) -> torch.Tensor:
        data, sr = decoded
        return torch.from_numpy(to_mono(data, sr, self.sample_rate))


def check_audio(path: Path) -> str | None:
    """None when ``path`` is a usable audio file, else why not (the whole file is decoded once)."""
    suffix = path.suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        return f"not an audio file type ({suffix or 'no extension'}); expected one of {', '.join(AUDIO_EXTENSIONS)}"
    sf = _soundfile()
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        data, sr = read_audio(path)  # the whole file, once: a damaged one fails here, not at training time
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"cannot be decoded as audio ({msg})"
    if not len(data) or len(data) / sr < MIN_SECONDS:
        return f"too short ({len(data) / sr * 1000:.1f} ms; at least {MIN_SECONDS * 1000:.0f} ms)"
    if not np.isfinite(data).all():
        return "holds NaN or infinite samples"
    return None


def duration(path: str | Path) -> float:
    info = _soundfile().info(str(path))
    return info.frames / max(1, info.samplerate)
