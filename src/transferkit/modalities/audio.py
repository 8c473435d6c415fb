"""Audio clips: folders of class folders or CSVs of paths; mono 16 kHz; fixed-length log-mel inputs.

Every clip is decoded and resampled once (held in the process-wide cache like presized images),
then per use cropped or padded to the clip length — a random crop / placement in training, the
centre at evaluation — and turned into Whisper's log-mel spectrogram. Speech encoders (Whisper)
take the (80, frames) spectrogram of the clip's own length, never a 30 s window; image backbones
take it resized to a square over three channels.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..config import Option
from ..data import CsvImageData, ImageFolderData, ImageTransform
from ..errors import DataError
from ._audio_features import AudioOps, input_contract, log_mel
from ._audio_io import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioDecode, AudioLimit, check_audio, duration, read_audio
from ._base import Modality
from .image import cached_dataset, expand_files

log = logging.getLogger("transferkit")
SPECTROGRAM_IMAGE_SIZE = 128  # image backbones on spectrograms: 128 × 128 unless --image-size
IMAGE_MELS = 128


class AudioFolderData(ImageFolderData):
    """Audio files in ``root/<class>/*`` or ``root/{train,val,test}/<class>/*``; every file decoded once."""

    kind = "audio"
    check = staticmethod(check_audio)
    wanted = "only decodable audio files"


class CsvAudioData(CsvImageData):
    """A CSV with an audio path column and a label column (optional ``split`` and ``group`` columns)."""

    kind = "audio"
    check = staticmethod(check_audio)
    wanted = "only decodable audio files"


def clip_seconds_for(data) -> float:
    """The default clip length: the 95th percentile of the training clips' durations, 0.5–30 s."""
    paths = data.splits_["train"].inputs
    picked = paths[:: max(1, len(paths) // 500)]  # a sample is enough for a percentile
    secs = np.percentile([duration(p) for p in picked], 95)
    return float(min(30.0, max(0.5, math.ceil(secs * 4) / 4)))


class AudioModality(Modality):
    name = "audio"
    options = (Option("clip_seconds", float, None, "audio clip length in seconds (default: the 95th percentile of "
                      "the training clips)", low=0.01, high=30.0, wanted="a clip length in seconds, in (0, 30]"),)
    defaults = {"lr": 3e-3, "backbone_lr_mult": 0.1}
    inputs_help = "audio files or folders of them"
    backbone_inputs = ("audio", "image")
    backbone_fix = "Use packaged:whisper_base or packaged:efficientnet_lite0 (on spectrograms) for audio"
    #: Whisper-base's encoder: on FSDD with the speaker held out its probe scored 98.2% where Lite0 on spectrograms
    #: scored 40.8% (docs/benchmarks.md); Lite0 where the audio extra is not installed
    default_backbones = ("packaged:whisper_base", "packaged:efficientnet_lite0")
    request_help = "multipart/form-data with the audio file in a field named 'file'"
    request_body = "file"

    def detect(self, probe, cfg) -> int:
        return probe.share(AUDIO_EXTENSIONS)

    def data(self, path: Path, cfg, **split):
        if path.is_dir():
            return AudioFolderData(path, **split)
        return CsvAudioData(path, cfg.path_column, cfg.label_column, **split)

    def pipeline(self, backbone, cfg, data=None):
        if cfg.clip_seconds is None:
            if data is None:
                raise DataError("No clip length", "--clip-seconds, or data to measure it on")
            cfg.clip_seconds = clip_seconds_for(data)
            log.info("clip length %.2f s (95th percentile of the training clips; --clip-seconds to change)",
                     cfg.clip_seconds)
        dc = audio_config(backbone.pretrained_cfg, cfg.clip_seconds, cfg.image_size)
        return audio_transform(dc, cfg.augment), audio_transform(dc, "none"), dc

    def dataset(self, backbone, items, transform, cfg=None, fill=False, progress=None):
        return cached_dataset(items, transform, cfg, fill, progress, read_audio)

    def baseline_features(self, train, evaluate):
        """MFCC statistics: mean and std over time of 20 MFCCs and their deltas (standardised on train)."""
        t0 = time.time()
        x_train, x_eval = mfcc_stats(train.inputs), mfcc_stats(evaluate.inputs)
        mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
        return "mfcc-stats", (x_train - mu) / sd, (x_eval - mu) / sd, time.time() - t0

    def eval_transform(self, meta, backbone):
        return audio_transform(meta["data_config"], "none")

    def expand_inputs(self, inputs):
        return expand_files(inputs, AUDIO_EXTENSIONS, check_audio, "audio")

    def app_input(self, gr):
        return gr.Audio(type="filepath", sources=["upload", "microphone"], label="audio clip")

    def decode_request(self, payload: bytes, transform) -> torch.Tensor:
        import soundfile as sf  # optional (audio extra)

        try:
            data, sr = read_audio(io.BytesIO(payload))
        except AudioLimit as exc:
            raise DataError(f"The uploaded audio is refused before decoding: {exc}", "a clip of sensible length "
                            "and sample rate") from None
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise DataError(f"Cannot decode the upload as audio ({type(exc).__name__})",
                            "a WAV/FLAC/OGG file") from None
        if len(data) == 0 or not np.isfinite(data).all():
            raise DataError("The uploaded audio is empty or holds NaN samples", "a non-empty audio file")
        return transform((data, sr))

    def example_input(self, data_config, n=2):
        return torch.randn(n, *data_config["input_shape"])

    def contract(self, data_config):
        dc = data_config
        clip = {"input_shape": dc["input_shape"], "clip_samples": dc["clip_samples"],
                "clip": "mono, resampled, centre-cropped or zero-padded (centred) to clip_samples"}
        if not dc["n_mels"]:
            return {**input_contract(dc), **clip, "layout": "N×samples float32"}
        return {**input_contract(dc), **clip, "image_size": dc["image_size"] or None,
                "layout": ("N×3×S×S: the spectrogram resized to S×S (bilinear), repeated over 3 channels"
                           if dc["image_size"] else "N×n_mels×frames")}

    def preview(self, item: str) -> str:
        """A spectrogram and an audio player (the clip as 16 kHz WAV, at most 10 s)."""
        try:
            import soundfile as sf  # optional (audio extra)

            wave = AudioDecode()(read_audio(item))[: 10 * SAMPLE_RATE]
            buf = io.BytesIO()
            sf.write(buf, wave.numpy(), SAMPLE_RATE, format="WAV", subtype="PCM_16")
            audio = base64.b64encode(buf.getvalue()).decode()
            spec = _spectrogram_png(log_mel(wave).numpy())
        except Exception:
            return "(audio unavailable)"
        return (f'<img class=spec alt="spectrogram of {html.escape(Path(item).name)}" src="data:image/png;base64,{spec}">'
                f'<audio controls preload=none src="data:audio/wav;base64,{audio}"></audio>')


def mfcc_stats(paths: list[str], n_mfcc: int = 20) -> np.ndarray:
    """Per clip: mean and std over time of MFCCs (DCT-II of Whisper's log-mel) and of their deltas."""
    from scipy.fft import dct  # heavy: loaded on first use

    decode = AudioDecode()

    def one(path: str) -> np.ndarray:
        mfcc = dct(log_mel(decode(read_audio(path))).numpy(), type=2, axis=0, norm="ortho")[:n_mfcc]
        delta = np.diff(mfcc, axis=1) if mfcc.shape[1] > 1 else np.zeros_like(mfcc)
        return np.concatenate([mfcc.mean(1), mfcc.std(1), delta.mean(1), delta.std(1)])

    with ThreadPoolExecutor(4) as pool:
        return np.stack(list(pool.map(one, paths))).astype(np.float32)


def audio_config(pretrained: dict, clip_seconds: float, image_size: int | None) -> dict:
    """Sample rate, clip length, mel bands and input shape for a backbone (speech encoder or image model)."""
    speech = pretrained.get("audio")  # speech encoders describe their front-end; image backbones do not
    clip = int(round(clip_seconds * SAMPLE_RATE))
    frames = clip // 160
    if speech and speech.get("input") == "waveform":  # wav2vec2-style: the normalised waveform itself
        n_mels, size, shape = 0, 0, [clip]
    elif speech:
        n_mels = int(speech["n_mels"])
        frames = min(frames, int(speech.get("max_frames", frames)))
        clip = frames * 160
        shape, size = [n_mels, frames], 0
    else:
        n_mels, size = IMAGE_MELS, int(image_size or SPECTROGRAM_IMAGE_SIZE)
        shape = [3, size, size]
    return {"sample_rate": SAMPLE_RATE, "clip_samples": clip, "clip_seconds": clip / SAMPLE_RATE,
            "n_mels": n_mels, "image_size": size, "input_shape": shape,
            "normalize": bool(speech.get("normalize", False)) if speech else False}


def audio_transform(dc: dict, augment: str) -> ImageTransform:
    """Decode stage (mono, resampled; cacheable) then the per-use ops."""
    ops = AudioOps(dc["clip_samples"], augment, dc["n_mels"], dc["sample_rate"], dc["image_size"],
                   dc.get("normalize", False))
    return ImageTransform(AudioDecode(dc["sample_rate"]), ops)


def _spectrogram_png(spec: np.ndarray) -> str:
    import matplotlib  # heavy: loaded on first use

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: loaded on first use

    fig, ax = plt.subplots(figsize=(2.2, 1.2), dpi=100)
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma")
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


import time
from concurrent.futures import ThreadPoolExecutor

from . import register_modality  # noqa: E402

register_modality(AudioModality())
