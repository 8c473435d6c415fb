"""Modalities by name: each module is the one place that knows its kind of input.

``get_modality(name)`` returns the registered :class:`Modality`; ``detect(cfg)`` picks one from the
data (folder contents, table columns) unless ``cfg.modality`` names it; ``data_for(cfg)`` reads the
labelled data with it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..config import declare
from ..errors import ConfigError, DataError
from ._base import Modality

_MODALITIES: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Register a modality (it keeps no run state) and declare its options."""
    declare(f"modality {modality.name}", *modality.options)
    _MODALITIES[modality.name] = modality
    return modality


def modalities() -> dict[str, Modality]:
    return dict(_MODALITIES)


def get_modality(name: str) -> Modality:
    if name not in _MODALITIES:
        raise ConfigError(f"Unknown modality '{name}'", f"one of {', '.join(_MODALITIES)}",
                          "Leave --modality out to detect it from the data")
    return _MODALITIES[name]


TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".json")


@dataclass
class Probe:
    """What detection looks at: file suffixes in a folder, or a table's columns and path suffixes."""

    path: Path
    suffixes: Counter = field(default_factory=Counter)  # of files in the folder (or of the path column)
    columns: list[str] = field(default_factory=list)
    has_paths: bool = False  # the table has the path column

    def share(self, wanted: tuple[str, ...]) -> int:
        return sum(n for s, n in self.suffixes.items() if s in wanted)


def probe(path: Path, path_column: str, quoting: str = "auto", limit: int = 5000) -> Probe:
    """Look at up to ``limit`` file names (or table rows) to tell the modality."""
    p = Probe(path)
    if path.is_dir():
        for n, (dirpath, _dirs, names) in enumerate(os.walk(path)):
            p.suffixes.update(Path(f).suffix.lower() for f in names)
            if sum(p.suffixes.values()) > limit or n > limit:
                break
    elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
        table = read_rows(path, quoting)
        rows = table.rows
        p.columns = table.header
        if path_column in p.columns:
            p.has_paths = True
            p.suffixes.update(Path(str(r.get(path_column) or "")).suffix.lower() for r in rows[:limit])
    return p


def check_data_path(path: Path, what: str = "Data path") -> None:
    """A path the data readers can read: a folder, or a table file (a single photo or clip is neither)."""
    if not path.exists():
        raise DataError(f"{what} {path} does not exist", "a folder (one sub-folder per class) or a CSV/TSV/JSONL file",
                        "Check the path")
    if path.is_file() and path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{what} {path} is neither a folder nor a table file ({path.suffix})",
                        f"a folder, or a file ending in {', '.join(TABLE_SUFFIXES)}",
                        "Point it at the folder that holds the inputs, or at a table listing them")


def detect(cfg) -> Modality:
    """The modality of ``cfg.data`` (or ``cfg.modality`` when given)."""
    if cfg.modality:
        return get_modality(cfg.modality)
    if not cfg.data:
        raise DataError("No data given", "a folder of inputs or a CSV/TSV/JSONL file", "Pass DATA")
    path = Path(cfg.data)
    check_data_path(path)
    found = probe(path, cfg.path_column, cfg.quoting)
    scores = {name: m.detect(found, cfg) for name, m in _MODALITIES.items()}
    best = max(scores, key=scores.get)
    if scores[best] <= 0:
        if path.is_dir():  # an empty or unusual folder: the image reader explains what it expected
            return _MODALITIES["image"]
        raise DataError(f"{path} has no column '{cfg.path_column}' (of files) or '{cfg.text_column}' (of texts) "
                        f"(columns: {', '.join(found.columns) or 'none'})",
                        f"a '{cfg.path_column}' column of files or a '{cfg.text_column}' column of texts, and a "
                        f"'{cfg.label_column}' column",
                        "Rename the columns, or pass --path-column / --text-column / --label-column")
    return _MODALITIES[best]


def data_for(cfg, modality: Modality | None = None, **split_overrides):
    """The labelled data of a run's config, read by its modality (detected unless given)."""
    modality = modality or detect(cfg)

    return modality.data(Path(cfg.data), cfg, **{**split_settings(cfg), **split_overrides})


def modality_of(data) -> Modality:
    """The modality a dataset object was read by."""
    return get_modality(data.kind)


from ..data import read_rows, split_settings
from . import audio, image, text  # noqa: E402,F401  (register the built-in modalities)
from ._audio_features import input_contract, log_mel, random_gain, spec_augment, standardise  # noqa: E402
from ._audio_io import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioDecode, check_audio, duration, read_audio  # noqa: E402
from .image import cached_dataset  # noqa: E402

__all__ = ["AUDIO_EXTENSIONS", "AudioDecode", "SAMPLE_RATE", "cached_dataset", "check_audio", "check_data_path", "duration",
           "input_contract", "log_mel", "random_gain", "read_audio", "spec_augment", "standardise",
           "Modality", "data_for", "detect", "get_modality", "modalities", "modality_of", "register_modality"]
