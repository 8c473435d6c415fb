"""Reading audio: libsndfile (``soundfile``) for every format it knows, ``soxr`` to resample, mono float32."""

from __future__ import annotations

import os
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


#: the longest clip any path decodes (training, predict, serve), in seconds: TRANSFERKIT_MAX_AUDIO_SECONDS sets it
MAX_AUDIO_SECONDS = float(os.environ.get("TRANSFERKIT_MAX_AUDIO_SECONDS", 600))
RATES = (1000, 768_000)  # sample rates outside these are not audio a model can use (a 1 Hz header is a bomb)
MAX_CHANNELS = 64


class AudioLimit(ValueError):
    """A file whose header promises more audio than any path decodes (a decompression bomb, or a recording that
    should be split), with the reason."""


def check_header(rate: int, channels: int, frames: int, limit: float | None = None) -> None:
    """Refuse, before decoding, what would decode to absurd sizes: rates outside ``RATES``, more than
    ``MAX_CHANNELS`` channels, or more than ``limit`` seconds (default ``MAX_AUDIO_SECONDS``)."""
    limit = MAX_AUDIO_SECONDS if limit is None else limit
    if not RATES[0] <= rate <= RATES[1]:
        raise AudioLimit(f"sample rate {rate} Hz is outside {RATES[0]}–{RATES[1]} Hz (resampling it would "
                         f"make {frames / max(rate, 1):.0f} s of audio)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioLimit(f"{channels} channels (at most {MAX_CHANNELS})")
    if frames / rate > limit:
        raise AudioLimit(f"{frames / rate:.0f} s long, over the {limit:.0f} s limit (split it into shorter clips, or "
                         "set TRANSFERKIT_MAX_AUDIO_SECONDS)")


def read_audio(source, limit: float | None = None) -> tuple[np.ndarray, int]:
    """(samples float32 of shape (frames, channels), sample rate) — any format libsndfile reads. The header is
    checked first (:func:`check_header`), and no more than the limit's frames are ever decoded, whatever the header
    claims: every path that reads audio (training, predict, serve, reports) goes through here."""
    sf = _soundfile()
    src = str(source) if isinstance(source, (str, Path)) else source
    with sf.SoundFile(src) as f:
        check_header(f.samplerate, f.channels, f.frames, limit)
        cap = int((MAX_AUDIO_SECONDS if limit is None else limit) * f.samplerate) + 1
        data = f.read(cap, dtype="float32", always_2d=True)
        if len(data) >= cap:  # a header that understated its length
            raise AudioLimit(f"longer than the {cap / f.samplerate:.0f} s limit (its header said "
                             f"{f.frames / f.samplerate:.0f} s)")
        return data, int(f.samplerate)


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
    except AudioLimit as exc:
        return f"refused before decoding: {exc}"
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
