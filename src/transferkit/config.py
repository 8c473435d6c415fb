"""One resolved run configuration: flags > config file > defaults, saved with every run.

Every setting is an :class:`Option` declared by the plug-in it belongs to (the run's own below; each task,
strategy, modality and adaptation method beside its code): the command line, config files, validation and the
saved ``config.yaml`` are made from those declarations, so adding a setting touches one file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from types import MappingProxyType
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One setting (``--name-with-dashes`` on the command line, ``name:`` in a config file).

    ``kind`` is int, float, str, bool or dict; ``choices`` and the inclusive range (``low``, ``high``) are checked
    once, wherever the value came from; ``path`` options are made absolute when a run starts (``--resume`` and
    ``evaluate`` then work from any folder). ``owner`` groups the option in ``--help`` and is set by
    :func:`declare`."""

    name: str
    kind: type = str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    wanted: str = ""  # what a valid value looks like, for the error message
    path: bool = False
    owner: str = "run"
    cli: bool = True  # offered as a flag of train and compare
    #: how ``tune`` searches it by default: ("log", low, high), ("float", low, high), ("int", low, high) or
    #: ("choice", value, …); empty: not searched unless a --space file names it
    search: tuple = ()


_OPTIONS: dict[str, Option] = {}


def declare(owner: str, *opts: Option) -> tuple[Option, ...]:
    """Register ``opts`` as ``owner``'s (a task, strategy, modality or adaptation method)."""
    for o in opts:
        known = _OPTIONS.get(o.name)
        if known is not None and known.owner != owner:
            raise ValueError(f"option {o.name} is declared by {known.owner} and {owner}")
        _OPTIONS[o.name] = dataclasses.replace(o, owner=owner)
    return opts


def options() -> dict[str, Option]:
    """Every declared option by name, in declaration order (the run's own first)."""
    return dict(_OPTIONS)


class RunConfig:
    """Everything that decides what a run does: one value per declared :class:`Option`. Saved as ``config.yaml``
    in the run folder."""

    def __init__(self, **values: Any):
        unknown = sorted(set(values) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)}")
        for name, o in _OPTIONS.items():
            setattr(self, name, values[name] if name in values else _fresh(o.default))

    def __getattr__(self, name: str) -> Any:  # an option declared after this object was made: its default
        if name in _OPTIONS:
            return _fresh(_OPTIONS[name].default)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"a run's resolved settings are read-only (tried to set {name}); copy.deepcopy(cfg) "
                                 "gives a config to change")
        super().__setattr__(name, value)

    def freeze(self) -> "RunConfig":
        """Make this config read-only: what planning resolved is then only read (``extra`` too)."""
        self.__dict__["extra"] = MappingProxyType(dict(self.__dict__.get("extra") or {}))
        self.__dict__["_frozen"] = True
        return self

    @property
    def frozen(self) -> bool:
        return bool(self.__dict__.get("_frozen"))

    def __deepcopy__(self, memo) -> "RunConfig":
        """A copy to change (never frozen)."""
        return RunConfig(**copy.deepcopy(self.to_dict(), memo))

    def __reduce__(self):  # pickled as its values (a worker process returns its run's config to the launcher)
        return _rebuild, (self.to_dict(), self.frozen)

    def __eq__(self, other) -> bool:
        return isinstance(other, RunConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def to_dict(self) -> dict[str, Any]:
        return {name: dict(v) if isinstance(v := getattr(self, name), MappingProxyType) else v for name in _OPTIONS}

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _rebuild(values: dict[str, Any], frozen: bool) -> RunConfig:
    cfg = RunConfig(**{k: v for k, v in values.items() if k in _OPTIONS})
    return cfg.freeze() if frozen else cfg


def _fresh(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


_O = Option
declare(
    "run",
    _O("data", help="image folder, or CSV/TSV/JSONL", path=True, cli=False),
    _O("backbone", help="source:name, e.g. packaged:efficientnet_lite0, timm:resnet50, file:w.safetensors (default: the "
       "task's and the data's own, chosen by measurement: `transferkit models`)"),
    _O("arch", help="timm architecture of a file: backbone"),
    _O("strategy", default="auto", help="auto: the task's and modality's candidates for the data, chosen on val "
       "within --budget"),
    _O("budget", float, None, "seconds --strategy auto may spend on its candidates (default 1800); the cheapest "
       "runs first, a candidate that would overrun is stopped", low=1.0, high=10**7, wanted="seconds ≥ 1"),
    _O("head", help="linear (default) | mlp:<width> | bottleneck:<width> (Linear, BatchNorm, ReLU, Linear: the "
       "domain-adaptation recipe's); asr: ctc | whisper; segment: unet | fpn | deeplabv3plus"),
    _O("task", default="classify"),
    _O("modality", help="image | text | audio (default: detected from the data: file types, table columns)"),
    _O("epochs", int, None, "passes over the training data (default 5, or what gives the task's number of steps)",
       low=1, high=100_000, wanted="a whole number of epochs ≥ 1", search=("int", 2, 12)),
    _O("epoch_steps", int, None, "optimizer steps per epoch, whatever the data size (default: one pass over the "
       "training data; the domain-adaptation recipe: 30)", low=1, high=10**7, wanted="steps per epoch ≥ 1"),
    _O("batch_size", int, None, "default 16 (segmentation 8)", low=1, high=65_536, wanted="a batch size ≥ 1"),
    _O("lr", float, None, "the head's learning rate (default: the modality's, task's or strategy's)",
       low=1e-12, high=10.0, wanted="a learning rate such as 1e-3, in (0, 10]", search=("log", 1e-5, 3e-2)),
    _O("backbone_lr_mult", float, None, "backbone lr = lr × this (default 0.1 images, 0.05 text)", low=0.0,
       high=100.0, wanted="a multiplier ≥ 0 (0 freezes the backbone's learning rate)", search=("log", 0.01, 1.0)),
    _O("optimizer", help="adamw (default) | sgd (Nesterov momentum 0.9)", choices=("adamw", "sgd")),
    _O("weight_decay", float, None, "default 0.01", low=0.0, high=10.0, wanted="a weight decay ≥ 0",
       search=("log", 1e-5, 0.1)),
    _O("warmup_epochs", float, None, "default 0.5", low=0.0, high=100_000, wanted="epochs of warm-up ≥ 0"),
    _O("schedule", help="learning rate over training: cosine (default, after the warm-up) | inverse: × (1 + 20 p)^-0.75 "
       "at progress p (the domain-adaptation recipe's, Long et al. / TLlib)", choices=("cosine", "inverse")),
    _O("patience", int, 0, "early-stopping patience in epochs (0: off)", low=0, high=100_000,
       wanted="epochs of patience ≥ 0 (0: no early stopping)"),
    _O("checkpoint_every", float, 60.0, "seconds of training between resume checkpoints (0: every epoch)",
       low=0.0, high=10**7, wanted="seconds ≥ 0 (0: a checkpoint after every epoch)"),
    _O("select", default="val", help="the epoch kept: val (best val score, when val is not the reported split) | "
       "last | dev (with --target: the lowest Deep Embedded Validation estimate of the target loss, no target label read)",
       choices=("val", "last", "dev")),
    _O("augment", default="light", choices=("none", "light", "standard"), search=("choice", "none", "light", "standard")),
    _O("image_size", int, None, "override the backbone's input size", low=16, high=4096,
       wanted="an input size in pixels, 16–4096"),
    _O("seed", int, 0, low=0, high=2**32 - 1, wanted="a seed ≥ 0"),
    _O("split_seed", int, 0, low=0, high=2**32 - 1, wanted="a seed ≥ 0"),
    _O("val_fraction", float, 0.15, low=0.0, high=0.999, wanted="a fraction in [0, 1)"),
    _O("test_fraction", float, 0.15, low=0.0, high=0.999, wanted="a fraction in [0, 1)"),
    _O("shots", int, None, "training examples per class (few-shot), seeded", low=1, high=10**9,
       wanted="examples per class ≥ 1"),
    _O("label_by", help=r"regex over file names whose first group is the label (a flat folder), e.g. '^(\d+)_'"),
    _O("group_by", help="regex over file names; its first group (speaker, patient…) never spans two splits"),
    _O("on_bad_file", default="skip", choices=("skip", "error")),
    _O("on_leak", default="warn", help="identical inputs in train and val/test, or under two labels",
       choices=("warn", "error")),
    _O("bn", default="auto", help="BatchNorm statistics: auto (eval for pretrained, train for scratch)",
       choices=("auto", "eval", "train")),
    _O("layer_decay", float, None, "layer-wise lr decay r (e.g. 0.75)", low=1e-6, high=1.0,
       wanted="a layer-wise decay in (0, 1]"),
    _O("l2sp", float, 0.0, "L2-SP strength α (a pull toward the pretrained weights)", low=0.0, high=1e6,
       wanted="an L2-SP strength ≥ 0"),
    _O("sampler", default="random", choices=("random", "balanced")),
    _O("workers", int, None, low=0, high=256, wanted="DataLoader workers ≥ 0"),
    _O("precision", default="auto", help="mixed precision (auto: bf16 on a GPU; on a bf16-capable CPU for "
       "transformers; else no)", choices=("auto", "no", "bf16", "fp16")),
    _O("channels_last", bool, True, "NHWC memory format for image models (default on)"),
    _O("image_cache_mb", int, None, "decoded-input cache bound in MiB (default: RAM/4 up to 4096; 0: off)", low=0,
       high=2**31, wanted="a size in MiB, or 0 to turn the cache off"),
    _O("cpu", bool, False, "force the CPU"),
    _O("output", default="runs", help="folder for run folders (default runs)"),
    _O("name", help="run folder name"),
    _O("cache_dir", help="feature cache (default ~/.cache/transferkit)"),
    _O("track", help="experiment trackers, comma-separated: tensorboard (event files in the run folder), mlflow "
       "(a local store beside the runs, or MLFLOW_TRACKING_URI / --track-uri), wandb, comet_ml, aim, clearml, dvclive"),
    _O("track_uri", help="the tracking server's URI (MLflow)"),
    _O("track_group", help="the comparison or search a run belongs to (set by compare and tune)", cli=False),
    _O("extra", dict, {}, "free-form settings kept with the run", cli=False),
)
del _O


#: what a run trains with when neither the user nor a plug-in (modality, backbone, task, strategy, adaptation) says
RUN_DEFAULTS = {"batch_size": 16, "head": "linear", "optimizer": "adamw", "weight_decay": 0.01, "warmup_epochs": 0.5,
                "schedule": "cosine"}


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

    on = torch.device(device).type
    if on == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if on == "cpu" and cpu_bf16 and _native_cpu_bf16():
        return "bf16"
    return "no"


def _native_cpu_bf16() -> bool:
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, f, lambda: False)() for f in probes)


def valid_keys() -> list[str]:
    return list(_OPTIONS)


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

def _typed(key: str, value: Any, kind: type, wanted: str) -> Any:
    """``value`` as ``kind`` (YAML and flags may give "0.2" or 3.0); a ConfigError naming the key otherwise."""
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
    """Check every setting once, from its declaration: choices, types (``epochs: five``), ranges (``--lr inf``,
    ``--shots 0``), text and true/false values."""
    for key, o in _OPTIONS.items():
        value = getattr(cfg, key)
        if value is None:
            continue
        if o.choices and value not in o.choices:
            raise ConfigError(f"Unknown --{key.replace('_', '-')} value: {key}={value!r}",
                              f"one of {', '.join(map(str, o.choices))}")
        if o.kind in (int, float):
            wanted = o.wanted or f"a number for {key}"
            value = _typed(key, value, o.kind, wanted)
            if (o.low is not None and value < o.low) or (o.high is not None and value > o.high):
                raise ConfigError(f"{key}={value} is out of range", wanted)
            setattr(cfg, key, value)
        elif o.kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not true or false", f"true or false for {key}")
        elif o.kind is str and not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} is not text", f"a string for {key}")
        elif o.kind is dict and not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} is not a mapping", f"key: value pairs for {key}")
    if cfg.val_fraction + cfg.test_fraction >= 1:
        raise ConfigError(
            f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction} leave no training data",
            "fractions in [0, 1) that add up to less than 1",
        )
