"""Glue between data and backbones: which dataset a path is, and how a backbone wants its inputs."""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .data import CsvImageData, ImageDataset, ImageFolderData, Items, LabelledData, read_table
from .data import eval_transform, resolve_data_config, shared_cache, train_transform
from .errors import DataError

TEXT_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".json")


def data_from_config(cfg: RunConfig, **split_overrides) -> LabelledData:
    """An image folder, an image CSV (has the path column) or a text table (has the text column)."""
    kw = dict(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.split_seed,
              on_bad_file=cfg.on_bad_file, shots=cfg.shots)
    kw.update(split_overrides)
    path = Path(cfg.data)
    if not cfg.data:
        raise DataError("No data given", "a folder of images or a CSV/TSV/JSONL file", "Pass DATA")
    if path.is_dir():
        return ImageFolderData(path, **kw)
    if path.suffix.lower() in TEXT_SUFFIXES and path.is_file():
        columns = _columns(path)
        if cfg.path_column in columns:
            return CsvImageData(path, cfg.path_column, cfg.label_column, **kw)
        from .data.text import TextData

        return TextData(path, cfg.text_column, cfg.label_column, **kw)
    if not path.exists():
        raise DataError(f"Data path {path} does not exist",
                        "a folder of images (one sub-folder per class) or a CSV/TSV/JSONL file", "Check the path")
    raise DataError(f"{path} is neither a folder nor a table file ({path.suffix})",
                    f"a folder, or a file ending in {', '.join(TEXT_SUFFIXES)}")


def _columns(path: Path) -> list[str]:
    if path.suffix.lower() in (".jsonl", ".json"):
        from .data.text import read_jsonl

        rows = read_jsonl(path)
    else:
        rows = read_table(path)
    return list(rows[0].keys()) if rows else []


def input_pipeline(backbone, cfg: RunConfig):
    """(train transform, eval transform, data config) for the backbone's modality."""
    if backbone.modality == "text":
        return None, None, {"max_length": cfg.max_length}
    dc = resolve_data_config(backbone.pretrained_cfg, cfg.image_size)
    return train_transform(dc, cfg.augment), eval_transform(dc), dc


def make_dataset(backbone, items: Items, transform, cfg: RunConfig | None = None, fill: bool = False,
                 progress=None):
    """The backbone's dataset of ``items``. With a run's ``cfg``, image datasets use the process-wide
    decoded-image cache (bounded by ``cfg.image_cache_mb``); ``fill`` decodes the missing images into
    it now — worth it for data read every epoch."""
    if backbone.modality == "text":
        from .data.text import TextDataset

        return TextDataset(items, backbone.tokenizer, backbone.max_length)
    cache = None
    if cfg is not None and cfg.image_cache_mb != 0:
        cache = shared_cache(None if cfg.image_cache_mb is None else cfg.image_cache_mb << 20)
    return ImageDataset(items, transform, cache=cache, fill=fill and cache is not None, progress=progress)
