"""Datasets, splits and transforms."""

from ..config import Option, declare
from ._cache import ImageCache, cache_for, held_inputs, shared_cache
from ._datasets import SPLITS, ImageDataset, Items, LabelledData, split_settings
from ._folders import CsvImageData, ImageFolderData, SavedSplit
from ._images import IMAGE_EXTENSIONS, check_image, decode_checked, load_rgb, open_image, to_rgb, upright_size
from ._split import grouped_split, sample_shots, stratified_split
from ._tables import SPLIT_ALIASES, clean_split, read_rows
from ._transforms import ImageTransform, Presize, eval_transform, resolve_data_config, train_transform

declare(
    "tables",
    Option("text_column", default="text", help="a table's text (or transcript) column"),
    Option("label_column", default="label", help="a table's label column"),
    Option("path_column", default="path", help="a table's file-path column"),
    Option("quoting", default="auto", help="tables: auto (csv quotes; a quote that swallows rows is an error) | csv "
           "(quoted fields may span lines) | none", choices=("auto", "csv", "none")),
)

__all__ = [
    "SPLITS", "SPLIT_ALIASES", "clean_split", "decode_checked",
    "CsvImageData", "IMAGE_EXTENSIONS", "ImageCache", "cache_for", "ImageDataset", "ImageTransform", "Presize", "ImageFolderData", "Items", "LabelledData", "SavedSplit", "check_image",
    "eval_transform", "load_rgb", "read_rows", "resolve_data_config", "sample_shots",
    "grouped_split", "held_inputs", "open_image", "shared_cache", "split_settings", "stratified_split", "to_rgb", "train_transform", "upright_size",
]
