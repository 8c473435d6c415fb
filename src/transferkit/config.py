"""One resolved run configuration: flags > config file > defaults, saved with every run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


@dataclass
class RunConfig:
    """Everything that decides what a run does. Saved as ``config.yaml`` in the run folder."""

    data: str = ""
    backbone: str = "packaged:efficientnet_lite0"
    arch: str | None = None  # timm architecture for file: backbones
    strategy: str = "auto"  # auto: the modality's choice for the data (linear-probe; contrastive for few texts)
    head: str = "linear"
    task: str = "classify"
    modality: str | None = None  # None: detected from the data (file types, table columns)
    epochs: int = 5
    batch_size: int = 16
    lr: float | None = None  # the head's learning rate (None: the modality's default)
    backbone_lr_mult: float | None = None  # backbone lr = lr * this (None: per modality)
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.0
    patience: int = 0  # early stopping patience in epochs; 0 disables
    checkpoint_every: float = 60.0  # seconds of training between resume checkpoints (0: after every epoch)
    select: str = "val"  # the epoch kept: val (best val score, when val is not the reported split) | last
    augment: str = "light"
    image_size: int | None = None  # overrides the backbone's pretrained input size
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    shots: int | None = None  # training examples per class (few-shot), seeded
    label_by: str | None = None  # regex over file names whose first group is the label (flat folders)
    group_by: str | None = None  # regex over file names whose first group keeps a group on one side of the split
    on_bad_file: str = "skip"
    on_leak: str = "warn"  # identical inputs in training and evaluation, or under two labels: warn | error
    bn: str = "auto"  # BatchNorm statistics: auto (eval for pretrained, train for scratch) | eval | train
    layer_decay: float | None = None
    l2sp: float = 0.0
    freeze_epochs: int = 1  # gradual: head-only epochs before unfreezing
    class_weights: str = "none"
    sampler: str = "random"
    workers: int | None = None
    precision: str = "auto"  # mixed precision: auto (bf16 on a GPU that has it, and on a bf16-capable CPU for transformers; else no) | no | bf16 | fp16
    channels_last: bool = True  # NHWC for convolutional image backbones (faster on CPU and GPU)
    image_cache_mb: int | None = None  # decoded-image cache bound; None: a quarter of RAM up to 4 GiB; 0: off
    cpu: bool = False
    output: str = "runs"
    name: str | None = None
    cache_dir: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    path_column: str = "path"
    quoting: str = "auto"  # tables: auto (csv quotes; a quote that swallows rows is an error) | csv | none
    max_length: int | None = None  # texts: tokens kept per text (None: the model's declared length, else 128)
    clip_seconds: float | None = None  # audio clip length (None: the 95th percentile of training clips)
    annotations: str | None = None  # detection: a COCO JSON (or a folder holding one) for images under data
    images: str | None = None  # detection: the folder COCO file names are relative to
    normalise: str = "basic"  # asr: scoring text normalisation (basic: lower-case, no punctuation, digits as words) | none
    noise_snr: float | None = None  # asr: training noise at this signal-to-noise ratio in dB (None: no noise)
    decode: str = "greedy"  # asr, CTC head: greedy | lexicon (beam search over the training transcripts' words)
    lm: str | None = None  # asr, --decode lexicon: a KenLM n-gram model (.arpa or .bin) over those words
    score_threshold: float = 0.5  # detection: boxes at or above this score are reported (and counted as TP/FP)
    target: str | None = None  # domain adaptation: unlabelled inputs from where the model will be used
    adapt: str = "none"  # domain adaptation method (see transferkit.adaptation.METHODS)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


_CHOICES = {
    "optimizer": ("adamw", "sgd"),
    "augment": ("none", "light", "standard"),
    "on_bad_file": ("skip", "error"),
    "on_leak": ("warn", "error"),
    "bn": ("auto", "eval", "train"),
    "class_weights": ("none", "auto"),
    "sampler": ("random", "balanced"),
    "precision": ("auto", "no", "bf16", "fp16"),
    "quoting": ("auto", "csv", "none"),
    "select": ("val", "last"),
    "normalise": ("basic", "none"),
    "decode": ("greedy", "lexicon"),
}


def fill_defaults(cfg: RunConfig, defaults: dict[str, Any]) -> RunConfig:
    """Fill the settings the user left unset (``None``) from ``defaults`` (a modality's)."""
    for key, value in defaults.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    return cfg


def resolve_precision(precision: str, device, cpu_bf16: bool = False) -> str:
    """``auto`` → bf16 autocast on a CUDA device that supports it; on a CPU with native bf16 matrix units (AMX or
    AVX512-BF16) for backbones that say they gain from it (``Backbone.cpu_bf16``); full precision elsewhere.

    Measured on an AMX CPU: MiniLM training steps 1.8× and inference 2.2–2.7× faster in bf16 with the same
    few-shot accuracy (bench/setfit_vs_transferkit.py --precision); a depthwise-convolutional image backbone
    trains no faster (bench/step_throughput.py), so image backbones keep full precision on CPU.
    """
    if precision != "auto":
        return precision
    import torch

    on = torch.device(device).type
    if on == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if on == "cpu" and cpu_bf16 and _native_cpu_bf16():
        return "bf16"
    return "no"


def _native_cpu_bf16() -> bool:
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, f, lambda: False)() for f in probes)


def valid_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def resolve_config(
    overrides: dict[str, Any] | None = None, config_file: str | Path | None = None
) -> RunConfig:
    """Merge defaults, a YAML config file and explicit overrides (``None`` means not given)."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(load_config_file(config_file))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    check_keys(merged, source="the settings")
    cfg = RunConfig(**merged)
    validate(cfg)
    return cfg


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} " + ("is a folder" if path.is_dir() else "does not exist"),
                          "a YAML file of run settings (e.g. a run's config.yaml)")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {path} is not UTF-8 (byte {exc.start})", "a UTF-8 YAML file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"Config file {path}{where} is not valid YAML ({problem})",
                          "key: value lines", "Fix the file's syntax at that line") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"Config file {path} holds a {type(loaded).__name__}",
                          "a mapping of setting names to values")
    check_keys(loaded, source=f"config file {path}")
    return loaded


def check_keys(values: dict[str, Any], source: str) -> None:
    unknown = sorted(set(values) - set(valid_keys()))
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(unknown)} in {source}",
            f"one of: {', '.join(valid_keys())}",
            "Rename or remove the key",
        )


# Every numeric setting, its type and its allowed range (inclusive bounds; None: unbounded), checked once here.
_RANGES: dict[str, tuple[type, float | None, float | None, str]] = {
    "epochs": (int, 1, 100_000, "a whole number of epochs ≥ 1"),
    "batch_size": (int, 1, 65_536, "a batch size ≥ 1"),
    "lr": (float, 1e-12, 10.0, "a learning rate such as 1e-3, in (0, 10]"),
    "backbone_lr_mult": (float, 0.0, 100.0, "a multiplier ≥ 0 (0 freezes the backbone's learning rate)"),
    "weight_decay": (float, 0.0, 10.0, "a weight decay ≥ 0"),
    "warmup_epochs": (float, 0.0, 100_000, "epochs of warm-up ≥ 0"),
    "label_smoothing": (float, 0.0, 0.999, "a label smoothing in [0, 1)"),
    "patience": (int, 0, 100_000, "epochs of patience ≥ 0 (0: no early stopping)"),
    "checkpoint_every": (float, 0.0, 10**7, "seconds ≥ 0 (0: a checkpoint after every epoch)"),
    "noise_snr": (float, -20.0, 100.0, "a signal-to-noise ratio in dB, -20 to 100"),
    "image_size": (int, 16, 4096, "an input size in pixels, 16–4096"),
    "seed": (int, 0, 2**32 - 1, "a seed ≥ 0"),
    "split_seed": (int, 0, 2**32 - 1, "a seed ≥ 0"),
    "val_fraction": (float, 0.0, 0.999, "a fraction in [0, 1)"),
    "test_fraction": (float, 0.0, 0.999, "a fraction in [0, 1)"),
    "shots": (int, 1, 10**9, "examples per class ≥ 1"),
    "layer_decay": (float, 1e-6, 1.0, "a layer-wise decay in (0, 1]"),
    "l2sp": (float, 0.0, 1e6, "an L2-SP strength ≥ 0"),
    "freeze_epochs": (int, 0, 100_000, "head-only epochs ≥ 0"),
    "workers": (int, 0, 256, "DataLoader workers ≥ 0"),
    "image_cache_mb": (int, 0, 2**31, "a size in MiB, or 0 to turn the cache off"),
    "max_length": (int, 1, 1_000_000, "a token count ≥ 1"),
    "clip_seconds": (float, 0.01, 30.0, "a clip length in seconds, in (0, 30]"),
    "score_threshold": (float, 0.0, 1.0, "a score in [0, 1]"),
}
_TEXT = ("data", "backbone", "arch", "strategy", "head", "task", "modality", "output", "name", "cache_dir",
         "text_column", "label_column", "path_column", "group_by", "label_by", "annotations", "images")


def _typed(key: str, value: Any, kind: type, wanted: str) -> Any:
    """``value`` as ``kind`` (YAML and flags may give "0.2" or 3.0); a ConfigError naming the key otherwise."""
    import math

    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{key}={value!r} is not {'a whole number' if kind is int else 'a number'}", wanted)
    try:
        typed = kind(value) if not isinstance(value, str) else kind(float(value) if kind is int else value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not {'a whole number' if kind is int else 'a number'}", wanted) from None
    if kind is float and not math.isfinite(typed):
        raise ConfigError(f"{key}={value!r} is not a finite number", wanted)
    return typed


def validate(cfg: RunConfig) -> None:
    """Check every setting once: choices, types (``epochs: five``), ranges (``--lr inf``, ``--shots 0``)."""
    for key, choices in _CHOICES.items():
        value = getattr(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not a valid choice", f"one of {', '.join(choices)}")
    for key, (kind, low, high, wanted) in _RANGES.items():
        value = getattr(cfg, key)
        if value is None:
            continue
        value = _typed(key, value, kind, wanted)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{key}={value} is out of range", wanted)
        setattr(cfg, key, value)
    for key in _TEXT:
        value = getattr(cfg, key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} is not text", f"a string for {key}")
    for key in ("cpu", "channels_last"):
        if not isinstance(getattr(cfg, key), bool):
            raise ConfigError(f"{key}={getattr(cfg, key)!r} is not true or false", f"true or false for {key}")
    if cfg.val_fraction + cfg.test_fraction >= 1:
        raise ConfigError(
            f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction} leave no training data",
            "fractions in [0, 1) that add up to less than 1",
        )
