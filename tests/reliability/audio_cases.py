"""Bad audio clips: each a listed skip, an accepted odd input, or one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from conftest import TINY, make_audio_folder, write_tone

FLAGS = ["--backbone", TINY, "--image-size", "32", "--epochs", "1", "--workers", "0"]


def _clips(tmp: Path, flat: bool = False) -> Path:
    return make_audio_folder(tmp / "clips", classes=2, per_class=8, flat=flat)


def _with_clip(name: str, write: Callable[[Path], None]):
    def build(tmp: Path, run: Path) -> list[str]:
        d = _clips(tmp)
        write(d / "class0" / name)
        return ["train", str(d), *FLAGS, "--output", str(tmp / "runs")]
    return build


def _tone(**kw) -> Callable[[Path], None]:
    return lambda p: write_tone(p, 0, np.random.default_rng(1), **kw)


def _truncated_wav(p: Path) -> None:
    write_tone(p, 0, np.random.default_rng(1), seconds=1.0)
    p.write_bytes(p.read_bytes()[:30])  # the header is cut before the data chunk


def _flat_clips(tmp: Path, run: Path) -> list[str]:
    return ["train", str(_clips(tmp, flat=True)), *FLAGS]


def _predict_non_audio(tmp: Path, run: Path) -> list[str]:
    import transferkit as tk

    d = _clips(tmp)
    audio_run = tk.fit(d, strategy="linear-probe", backbone=TINY, image_size=32, workers=0,
                       output=str(tmp / "audio_runs"), cache_dir=str(tmp / "c")).path
    (tmp / "noise.wav").write_text("not audio")
    return ["predict", str(audio_run), str(tmp / "noise.wav")]


def _rate_1hz(p: Path) -> None:
    """A 40 KB WAV whose header says 1 Hz: 20,000 samples would resample to 5.5 hours at 16 kHz."""
    import struct

    import soundfile as sf

    sf.write(str(p), np.zeros(20000, np.int16), 8000, subtype="PCM_16")
    b = bytearray(p.read_bytes())
    b[24:28], b[28:32] = struct.pack("<I", 1), struct.pack("<I", 2)
    p.write_bytes(bytes(b))


def _eleven_minutes(p: Path) -> None:
    import soundfile as sf

    sf.write(str(p), np.zeros(660 * 8000, np.int16), 8000, format="FLAC")


def cases(Case) -> list:
    return [
        Case("audio_zero_byte", "a zero-byte .wav", "skip", "empty file", _with_clip("empty.wav", lambda p: p.write_bytes(b""))),
        Case("audio_not_audio", "a text file named .wav", "skip", "cannot be decoded as audio",
             _with_clip("readme.wav", lambda p: p.write_text("this is text"))),
        Case("audio_truncated_header", "a WAV cut inside its header", "skip", "cannot be decoded as audio",
             _with_clip("cut.wav", _truncated_wav)),
        Case("audio_truncated_data", "a WAV cut inside its samples (the samples present are used)", "ok", "half.wav",
             _with_clip("half.wav", lambda p: (_tone(seconds=1.0)(p), p.write_bytes(p.read_bytes()[:9000])))),
        Case("audio_nan", "a float WAV holding NaN samples", "skip", "NaN",
             _with_clip("nan.wav", lambda p: __import__("soundfile").write(str(p), np.full(800, np.nan, np.float32), 8000, subtype="FLOAT"))),
        Case("audio_too_short", "a 5 ms clip", "skip", "too short", _with_clip("blip.wav", _tone(seconds=0.005))),
        Case("audio_silent", "a silent clip", "ok", "silent.wav",
             _with_clip("silent.wav", lambda p: __import__("soundfile").write(str(p), np.zeros(4000, np.float32), 8000))),
        Case("audio_very_short", "a 0.05 s clip (padded)", "ok", "short.wav", _with_clip("short.wav", _tone(seconds=0.05))),
        Case("audio_ten_minutes", "a 10-minute clip (cropped)", "ok", "long.wav",
             _with_clip("long.wav", _tone(seconds=600.0))),
        Case("audio_rate_1hz", "a WAV whose header says 1 Hz (a resampling bomb)", "skip", "outside 1000",
             _with_clip("slow.wav", _rate_1hz)),
        Case("audio_over_duration_limit", "an 11-minute FLAC of silence (over the 600 s limit)", "skip",
             "over the 600 s limit", _with_clip("eleven.flac", _eleven_minutes)),
        Case("audio_8bit", "an 8-bit WAV", "ok", "u8.wav", _with_clip("u8.wav", _tone(subtype="PCM_U8"))),
        Case("audio_24bit", "a 24-bit WAV", "ok", "s24.wav", _with_clip("s24.wav", _tone(subtype="PCM_24"))),
        Case("audio_float", "a 32-bit float WAV", "ok", "f32.wav", _with_clip("f32.wav", _tone(subtype="FLOAT"))),
        Case("audio_stereo", "a stereo WAV (averaged to mono)", "ok", "stereo.wav", _with_clip("stereo.wav", _tone(channels=2))),
        Case("audio_8khz_48khz", "8 kHz and 48 kHz clips (resampled to 16 kHz)", "ok", "k48.wav",
             _with_clip("k48.wav", _tone(sr=48000))),
        Case("audio_flac_ogg", "FLAC and Ogg Vorbis clips", "ok", "a.ogg", _with_clip("a.ogg", _tone(subtype="VORBIS"))),
        Case("audio_flat_folder", "clips with no class folders and no --label-by", "error", "--label-by", _flat_clips),
        Case("audio_bad_group_regex", "a --group-by that is not a regular expression", "error", "not a valid regular",
             lambda tmp, run: ["train", str(_clips(tmp)), *FLAGS, "--group-by", "(["]),
        Case("audio_group_matches_nothing", "a --group-by that matches no file name", "error", "matches none",
             lambda tmp, run: ["train", str(_clips(tmp)), *FLAGS, "--group-by", "^zzz(.)"]),
        Case("group_captures_nothing", "a --group-by whose group can match nothing (^(zzz)?)", "error",
             "its group captures nothing", lambda tmp, run: ["train", str(_clips(tmp)), *FLAGS, "--group-by", "^(zzz)?"]),
        Case("audio_clip_seconds_range", "--clip-seconds 0", "error", "clip_seconds=0",
             lambda tmp, run: ["train", str(_clips(tmp)), *FLAGS, "--clip-seconds", "0"]),
        Case("audio_text_backbone", "a text backbone on audio clips", "error", "takes text inputs",
             lambda tmp, run: ["train", str(_clips(tmp)), "--backbone", "packaged:minilm"]),
        Case("audio_predict_non_audio", "predict an audio run on a file that is not audio", "error", "Cannot read",
             _predict_non_audio),
    ]
