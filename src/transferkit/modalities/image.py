"""Images: folders of class folders or CSVs of paths; timm-exact preprocessing; thumbnails."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

import torch

from ..data import (
    IMAGE_EXTENSIONS,
    CsvImageData,
    ImageDataset,
    ImageFolderData,
    Items,
    cache_for,
    check_image,
    decode_checked,
    eval_transform,
    load_rgb,
    resolve_data_config,
    train_transform,
)
from ..errors import DataError
from ._base import Modality


def expand_files(inputs: Sequence[str], suffixes: tuple[str, ...], check, kind: str) -> list[str]:
    """Files as given; folders expanded to their files of ``suffixes`` (recursively, sorted); each checked."""
    out: list[str] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in suffixes)
        elif p.is_file():
            out.append(str(p))
        else:
            raise DataError(f"Input {p} does not exist", f"{kind} files or folders of them", "Check the path")
    if not out:
        raise DataError(f"No {kind} files found in the inputs given", f"files ending in {', '.join(suffixes)}")
    bad = [(f, r) for f in out if (r := check(Path(f)))]
    if bad:
        raise DataError(f"Cannot read {bad[0][0]}: {bad[0][1]}", f"decodable {kind} files",
                        f"Remove it from the inputs ({len(bad)} unreadable in all)")
    return out


def cached_dataset(items: Items, transform, cfg, fill: bool, progress, load) -> ImageDataset:
    """A dataset that holds decoded, presized inputs in the process-wide cache (bounded by the config)."""
    cache = cache_for(cfg)
    return ImageDataset(items, transform, cache=cache, fill=fill and cache is not None, progress=progress, load=load)


class ImageModality(Modality):
    name = "image"
    defaults = {"lr": 3e-3, "backbone_lr_mult": 0.1}
    inputs_help = "image files or folders of images"
    backbone_inputs = ("image",)
    backbone_fix = "Use packaged:efficientnet_lite0 or timm:<model> for images"
    #: ImageNet EfficientNet-Lite0: the packaged image backbone (hymenoptera probe 95.4%, natural_images 94.5%)
    default_backbones = ("packaged:efficientnet_lite0",)
    request_help = "multipart/form-data with the image in a field named 'file'"
    request_body = "file"

    def detect(self, probe, cfg) -> int:
        return probe.share(IMAGE_EXTENSIONS) + (1 if probe.path.is_dir() else 0)

    def data(self, path: Path, cfg, **split):
        if path.is_dir():
            return ImageFolderData(path, **split)
        return CsvImageData(path, cfg.path_column, cfg.label_column, **split)

    def pipeline(self, backbone, cfg, data=None):
        dc = resolve_data_config(backbone.pretrained_cfg, cfg.image_size)
        return train_transform(dc, cfg.augment), eval_transform(dc), dc

    def dataset(self, backbone, items, transform, cfg=None, fill=False, progress=None):
        return cached_dataset(items, transform, cfg, fill, progress, load_rgb)

    def eval_transform(self, meta, backbone):
        return eval_transform(meta["data_config"])

    def expand_inputs(self, inputs):
        return expand_files(inputs, IMAGE_EXTENSIONS, check_image, "image")

    def app_input(self, gr):
        return gr.Image(type="filepath", label="photo", height=360)

    def decode_request(self, payload: bytes, transform) -> torch.Tensor:
        try:
            rgb = decode_checked(io.BytesIO(payload))  # the same safety policy as training and predict
        except ValueError as exc:
            raise DataError(f"Cannot decode the upload as an image: {exc}", "a JPEG/PNG/WebP file") from None
        return transform(rgb)

    def example_input(self, data_config, n=2):
        return torch.randn(n, *data_config.get("input_size", [3, 224, 224]))

    def contract(self, data_config):
        dc = data_config
        return {"input_size": dc.get("input_size"), "mean": dc.get("mean"), "std": dc.get("std"),
                "crop_pct": dc.get("crop_pct"), "interpolation": dc.get("interpolation"),
                "layout": "NCHW float32, RGB, normalised"}

    def preview(self, item: str) -> str:
        try:
            img = load_rgb(item)
            img.thumbnail((300, 300))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
            b64 = base64.b64encode(buf.getvalue()).decode()
            return f'<img alt="{html.escape(Path(item).name)}" src="data:image/jpeg;base64,{b64}">'
        except Exception:
            return "(image unavailable)"


IMAGE = ImageModality()

from . import register_modality  # noqa: E402

register_modality(IMAGE)
