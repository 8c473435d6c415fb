"""The speed paths change nothing but speed: presized-image cache, channels-last, precision, workers."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from transferkit.data import ImageCache, ImageDataset, Items, eval_transform, resolve_data_config, train_transform

from conftest import TINY


def _photos(root: Path, sizes) -> Items:
    """JPEGs of assorted sizes and aspect ratios (portrait, landscape, smaller than the crop)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        arr[h // 4: h // 2, :, 0] = 250  # some structure, so resampling differences would show
        p = root / f"{i}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(str(p))
    return Items(paths, [i % 2 for i in range(len(paths))])


SIZES = [(120, 90), (90, 120), (64, 64), (30, 50), (201, 77)]


@pytest.mark.parametrize("interp", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [48, 37])
def test_eval_pipeline_is_timms_bit_for_bit(tmp_path, interp, size):
    items = _photos(tmp_path, SIZES)
    dc = resolve_data_config({"interpolation": interp, "crop_pct": 0.875, "mean": (0.5,) * 3, "std": (0.5,) * 3}, size)
    classic = T.Compose([T.Resize(int(math.floor(size / 0.875)), interpolation=T.InterpolationMode(interp)),
                         T.CenterCrop(size), T.ToTensor(), T.Normalize(dc["mean"], dc["std"])])
    ours = eval_transform(dc)
    for p in items.inputs:
        img = Image.open(p).convert("RGB")
        assert torch.equal(classic(img), ours(img)), p


@pytest.mark.parametrize("augment", ["none", "light", "standard"])
def test_cached_and_uncached_inputs_are_identical_and_decoded_once(tmp_path, monkeypatch, augment):
    from transferkit.data import _cache, _datasets

    items = _photos(tmp_path, SIZES)
    tf = train_transform(resolve_data_config({}, 40), augment)
    calls = []
    real = _cache.load_rgb
    monkeypatch.setattr(_cache, "load_rgb", lambda p: calls.append(p) or real(p))

    cached = ImageDataset(items, tf, cache=ImageCache(1 << 30), fill=True)
    plain = ImageDataset(items, tf)
    assert len(calls) == len(items.inputs)  # each file decoded once, at fill time
    monkeypatch.setattr(_datasets, "load_rgb", lambda p: pytest.fail(f"{p} decoded again"))
    for epoch in range(2):
        got = []
        for i in range(len(items.inputs)):
            torch.manual_seed(epoch * 100 + i)
            got.append(cached[i][0])
        monkeypatch.setattr(_datasets, "load_rgb", real)
        for i in range(len(items.inputs)):
            torch.manual_seed(epoch * 100 + i)
            assert torch.equal(got[i], plain[i][0])
        monkeypatch.setattr(_datasets, "load_rgb", lambda p: pytest.fail(f"{p} decoded again"))
    assert len(calls) == len(items.inputs)


def test_training_presize_keeps_enough_pixels_and_never_enlarges(tmp_path):
    items = _photos(tmp_path, [(400, 300), (20, 30)])
    tf = train_transform(resolve_data_config({}, 100), "light")  # smallest crop: half the area
    big, small = (tf.presize(Image.open(p).convert("RGB")) for p in items.inputs)
    assert min(big.shape[1:]) == math.ceil(100 / math.sqrt(0.5))  # the smallest crop is ≥ 100 px a side
    assert tuple(big.shape) == (3, 142, 189) and big.dtype == torch.uint8
    assert tuple(small.shape) == (3, 30, 20)  # left as it was


def test_cache_bound_eviction_and_changed_files(tmp_path):
    a = _photos(tmp_path / "a", [(64, 64)] * 4)
    b = _photos(tmp_path / "b", [(64, 64)] * 4)
    tf = eval_transform(resolve_data_config({}, 56))  # presize to 64: 12,288 bytes an image
    one = 3 * 64 * 64
    cache = ImageCache(max_bytes=5 * one)
    held_a = cache.take(a.inputs, tf.presize)
    assert all(h is not None for h in held_a) and cache.nbytes == 4 * one
    # b needs 4 more slots: a's least recently used entries make room, b's own are never evicted
    held_b = cache.take(b.inputs, tf.presize)
    assert all(h is not None for h in held_b) and cache.nbytes <= 5 * one and len(cache) == 5
    # larger than the whole bound: some held, the rest decoded per use, with identical results
    small = ImageCache(max_bytes=2 * one)
    ds = ImageDataset(a, tf, cache=small, fill=True)
    assert sum(h is not None for h in ds.held) == 2
    plain = ImageDataset(a, tf)
    assert all(torch.equal(ds[i][0], plain[i][0]) for i in range(4))
    # a rewritten file is decoded again, not served from the cache
    Image.new("RGB", (64, 64), (255, 0, 0)).save(a.inputs[0])
    os.utime(a.inputs[0], ns=(1, 1))
    fresh = cache.take(a.inputs[:1], tf.presize)[0]
    assert fresh is not None and int(fresh[0].float().mean()) > 240


def test_fill_stops_decoding_at_the_bound_and_leaves_broken_files_to_the_usual_error(tmp_path, monkeypatch):
    from transferkit.data import _cache

    items = _photos(tmp_path, [(32, 32)] * 200)
    tf = eval_transform(resolve_data_config({}, 28))
    calls = []
    real = _cache.load_rgb
    monkeypatch.setattr(_cache, "load_rgb", lambda p: calls.append(p) or real(p))
    ds = ImageDataset(items, tf, cache=ImageCache(max_bytes=3 * 32 * 32 * 3), fill=True)
    assert sum(h is not None for h in ds.held) == 3
    assert len(calls) < len(items.inputs)  # no full decoding pass for images that cannot be held

    Path(items.inputs[1]).write_bytes(b"not an image any more")
    ds = ImageDataset(Items(items.inputs[:3], items.labels[:3]), tf, cache=ImageCache(1 << 30), fill=True)
    assert ds.held[1] is None and ds.held[0] is not None
    from PIL import UnidentifiedImageError

    with pytest.raises(UnidentifiedImageError):  # what an uncached dataset raises for it, as before
        ds[1]


def test_auto_workers_follow_the_device_and_the_cache(tmp_path):
    from transferkit.features import auto_workers

    items = _photos(tmp_path, [(16, 16)] * 70)
    tf = eval_transform(resolve_data_config({}, 16))
    held = ImageDataset(items, tf, cache=ImageCache(1 << 30), fill=True)
    cold = ImageDataset(items, tf)
    tiny = ImageDataset(Items(items.inputs[:10], items.labels[:10]), tf)
    assert auto_workers(tiny) == 0
    if not torch.cuda.is_available():
        assert auto_workers(held) == 0  # nothing left to decode: the cores go to the model
        assert auto_workers(torch.utils.data.Subset(held, list(range(70)))) == 0  # val, read in length order
        assert auto_workers(cold) == min(2, os.cpu_count() or 1)


def test_precision_auto_resolves_per_device_and_is_recorded(image_folder, run_kwargs, monkeypatch):
    import yaml

    import transferkit as tk
    from transferkit.config import resolve_precision

    from transferkit.config import resolve_config
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="image_cache_mb=-1"):
        resolve_config({"image_cache_mb": -1})
    with pytest.raises(ConfigError, match="precision='fp8'"):
        resolve_config({"precision": "fp8"})
    assert resolve_precision("auto", "cpu") == "no"
    assert resolve_precision("bf16", "cpu") == "bf16"
    import transferkit.config as config

    for native in (True, False):  # transformers ask for bf16 on CPU; it is used where the CPU does it natively
        monkeypatch.setattr(config, "_native_cpu_bf16", lambda: native)
        assert resolve_precision("auto", "cpu", cpu_bf16=True) == ("bf16" if native else "no")
        assert resolve_precision("auto", "cpu", cpu_bf16=False) == "no"
    run = tk.fit(str(image_folder), **{**run_kwargs, "strategy": "finetune", "epochs": 1, "cpu": True})
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert saved["precision"] == "no" and saved["channels_last"] is True


def test_channels_last_changes_layout_not_results(image_folder, tmp_path):
    from transferkit.backbones import create_backbone
    from transferkit.config import RunConfig
    from transferkit.features import infer_logits
    from transferkit.heads import TransferModel, build_head
    from transferkit.strategies import get_strategy
    from transferkit.tasks import get_task
    from transferkit.config import RUN_DEFAULTS, fill_defaults
    from transferkit.training import ChannelsLast, train_loop

    items = Items(sorted(str(p) for p in image_folder.rglob("*.png")), [0] * 36)
    items.labels[:] = [int(Path(p).parent.name[-1]) for p in items.inputs]
    tf = eval_transform(resolve_data_config({}, 32))
    ds = ImageDataset(items, tf)
    torch.manual_seed(0)
    model = TransferModel(create_backbone(TINY), build_head("linear", 256, 3))
    nchw = infer_logits(model, ds, 8, channels_last=False)
    nhwc = infer_logits(model, ds, 8, channels_last=True)
    np.testing.assert_allclose(nhwc, nchw, rtol=1e-4, atol=1e-5)

    results = {}
    for cl in (False, True):
        torch.manual_seed(0)
        m = TransferModel(create_backbone(TINY), build_head("linear", 256, 3))
        cfg = fill_defaults(RunConfig(strategy="finetune", epochs=2, batch_size=8, workers=0, channels_last=cl,
                                      lr=1e-2, backbone_lr_mult=1.0), RUN_DEFAULTS)
        hist = train_loop(m, get_strategy(cfg), get_task("classify")(), ds, cfg, [ChannelsLast() if cl else None])
        assert all(p.is_contiguous() for p in m.parameters())  # saved weights are in the usual layout
        results[cl] = [h["train_loss"] for h in hist]
    np.testing.assert_allclose(results[True], results[False], rtol=1e-3)


def test_batchnorm_folding_is_exact_and_leaves_the_model_alone():
    from transferkit._fold import fold_batchnorm
    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    b = create_backbone(TINY)
    for m in b.modules():  # non-trivial running statistics, as a trained network has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    b.train()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    folded, n = fold_batchnorm(b, x[:2])
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in b.modules())
    assert n == n_bn > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert b.training and all(torch.equal(v, before[k]) for k, v in b.state_dict().items())
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), b(x), rtol=1e-4, atol=1e-5)


def test_batchnorm_folding_refuses_when_the_convolution_output_is_used_twice():
    from transferkit._fold import fold_batchnorm

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)
            self.bn.running_mean.fill_(0.5)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding bn into conv would change the second term

    m = Residual()
    folded, n = fold_batchnorm(m, torch.randn(2, 3, 8, 8))
    assert n == 0 and folded is m


def test_inference_with_folding_matches_the_plain_model(image_folder):
    from transferkit.backbones import create_backbone
    from transferkit.features import infer_logits

    items = Items(sorted(str(p) for p in image_folder.rglob("*.png")), [0] * 36)
    ds = ImageDataset(items, eval_transform(resolve_data_config({}, 32)))
    torch.manual_seed(0)
    b = create_backbone(TINY)
    plain = infer_logits(b, ds, 8, fold_bn=False, channels_last=False)
    fast = infer_logits(b, ds, 8, fold_bn=True, channels_last=True)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-4)
