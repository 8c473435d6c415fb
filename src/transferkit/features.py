"""Frozen-feature extraction with an on-disk cache, and fast linear heads fitted on it."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from . import _dist
from ._fold import inference_copy
from ._runfolder import atomic_write
from .data import ImageDataset, Items

log = logging.getLogger("transferkit")


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit"))


def _file_signature(items: Items) -> list:
    sig = []
    for p in items.inputs:
        try:
            st = os.stat(p)
            sig.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            sig.append((p, None, None))  # texts, or vanished files
    return sig


def cache_key(backbone, transform, items: Items, precision: str = "no", preprocessing: str | None = None) -> str:
    """Backbone weights + preprocessing + precision + file list (path, size, mtime): any change gives a new key.

    ``preprocessing`` is the modality's description of everything that changes the inputs (its
    ``feature_key``); without it, the transform's repr.
    """
    h = hashlib.sha1()
    h.update(precision.encode())
    h.update(backbone.weights_hash().encode())
    h.update((preprocessing if preprocessing is not None else repr(transform)).encode())
    h.update(repr(_file_signature(items)).encode())
    return h.hexdigest()[:24]


def auto_workers(dataset) -> int:
    """DataLoader worker processes matched to the machine.

    None for small datasets (start-up costs more than it saves) and for datasets whose items are ready in
    memory (``in_memory``: texts, tokenised once; workers would only add start-up and hand-over). On a GPU every
    core may feed it (up to 8). On CPU the model needs the cores itself: up to 2 workers decode while it
    computes, and none once the images are all held presized in memory (bench/step_throughput.py measured the
    CPU choices).
    """
    cores = os.cpu_count() or 1
    base = dataset
    while isinstance(base, torch.utils.data.Subset):  # inference in length order reads a Subset of the dataset
        base = base.dataset
    if len(dataset) < 64 or getattr(base, "in_memory", False):
        return 0
    if torch.cuda.is_available():
        return min(8, cores)
    held = getattr(base, "held", None)
    if held is not None and all(h is not None for h in held):
        return 0
    return min(2, cores)


def make_loader(dataset, batch_size: int, workers: int | None = None, collate_fn=None, **kw):
    """A DataLoader with the worker count matched to the machine; ``batch_sampler=`` replaces ``batch_size``."""
    workers = auto_workers(dataset) if workers is None else workers
    if kw.get("batch_sampler") is not None:
        batch_size = 1  # DataLoader's "unset" value: the batch sampler makes the batches
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       collate_fn=collate_fn, persistent_workers=False,
                                       pin_memory=torch.cuda.is_available(), **kw)


def to_device(x, device, channels_last: bool = False):
    """A batch (a tensor, or a dict of them, nested for paired domains) on ``device``; 4-d images NHWC if
    ``channels_last``."""
    if isinstance(x, torch.Tensor):
        fmt = torch.channels_last if channels_last and x.dim() == 4 else torch.preserve_format
        return x.to(device, memory_format=fmt, non_blocking=True)
    return {k: to_device(v, device, channels_last) for k, v in x.items()}  # text; (source, target) pairs


def autocast(device, precision: str):
    """bf16/fp16 autocast on ``device`` for ``precision`` in (bf16, fp16); a no-op for ``no``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def extract_features(backbone, items: Items, transform, batch_size: int = 32,
                     cache_dir: str | Path | None = None, workers: int | None = None,
                     device: torch.device | str = "cpu", progress=None, dataset=None, precision: str = "no",
                     channels_last: bool = True, preprocessing: str | None = None, shard: bool = False,
                     cache: bool = True) -> np.ndarray:
    """Pooled features (N, D) float32 of ``items`` under ``transform``, from cache when possible.

    Args:
        dataset: a ready Dataset (text uses its own); default is an image dataset of ``items``.
        progress: optional ``callable(n_items_just_done)``.
        shard: called by every one of several processes: each computes its share, all get every row; the
            main process reads and writes the cache (and shares what it read).
        cache: False skips the cache (and hashing the weights for its key): for weights nothing will read again.
    """
    path = None
    if cache:
        key = cache_key(backbone, transform, items, precision, preprocessing)
        path = Path(cache_dir or default_cache_dir()) / "features" / f"{key}.npy"
    feats = _read_cache(path, len(items)) if path is not None and (_dist.is_main() or not shard) else None
    if shard and _dist.world() > 1:
        feats = _dist.broadcast(feats)
    if feats is not None:
        log.info("features: %d from cache %s", len(items), path.name)
        return feats
    dataset = dataset if dataset is not None else ImageDataset(items, transform)
    backbone.to(device)
    feats = infer_logits(backbone, dataset, batch_size, device, workers, progress, precision, channels_last,
                         shard=shard)
    if not len(feats):
        feats = np.zeros((0, backbone.num_features), np.float32)
    if path is not None and (_dist.is_main() or not shard):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p: np.save(open(p, "wb"), feats))
        except OSError as exc:  # a cache we cannot write is not a reason to fail the run
            log.warning("feature cache not written (%s)", exc)
    return feats


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    if path.is_file():
        try:
            feats = np.load(path)
            if feats.shape[0] == n:
                return feats
        except (OSError, ValueError):
            pass  # damaged cache file: recompute
    return None


def feature_scale(feats: np.ndarray) -> float:
    """One global scale for features: their mean norm / sqrt(D) (1 where that is 0), so one grid of C, one
    learning rate or one regulariser fits every backbone."""
    return float(np.linalg.norm(feats, axis=1).mean() / np.sqrt(feats.shape[1])) or 1.0


def fit_logistic(feats: np.ndarray, labels: np.ndarray, num_classes: int, class_weight: str | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Multinomial logistic regression on standardised features, C by cross-validation on these data.

    Features are divided by one global scale (their mean norm / sqrt(D)) so one grid of C fits
    every backbone; the scale is folded into the returned weights, so ``feats @ W.T + b`` gives
    logits. One scalar, not a per-feature standardisation: dividing by tiny per-feature stds
    would give huge weights that blow up fine-tuning after the probe (lp-ft).

    Returns:
        (W of shape (num_classes, D), b of shape (num_classes,), chosen C)
    """
    labels = np.asarray(labels)
    scale = feature_scale(feats)
    z = feats / scale
    min_count = np.bincount(labels, minlength=num_classes)[np.unique(labels)].min()
    cw = "balanced" if class_weight == "auto" else None
    folds = int(min(5, min_count))
    from threadpoolctl import threadpool_limits  # loaded on first use

    # One BLAS thread: these small problems ran 6× slower with two threads on a 2-core machine.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", FutureWarning)  # sklearn's parameter-default transitions
        clf, c = _logistic(z, labels, folds, cw, seed)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; expand to two logits
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    w = np.zeros((num_classes, feats.shape[1]))
    b = np.full(num_classes, -1e4)  # classes absent from training can never be predicted
    w[clf.classes_] = coef / scale
    b[clf.classes_] = intercept
    return w.astype(np.float32), b.astype(np.float32), c


def infer_logits(model: torch.nn.Module, dataset, batch_size: int = 64, device: torch.device | str = "cpu",
                 workers: int | None = None, progress=None, precision: str = "no",
                 channels_last: bool = True, fold_bn: bool | None = None, shard: bool = False) -> np.ndarray:
    """Outputs (N, C) of ``model`` in eval mode over ``dataset`` (logits, or features for a backbone).

    With ``channels_last``, 4-d batches go in channels-last; with ``fold_bn`` (default: for 64 inputs or
    more, where the one-off copy pays) tensor batches run on ``_fold.inference_copy``: BatchNorm folded,
    checked on the first batch, NHWC. ``model`` itself is never changed. With ``shard`` (called by every one
    of several processes) each process runs its share and all get every output, in order.
    """
    n, collate = len(dataset), getattr(dataset, "collate_fn", None)
    order = None
    if getattr(dataset, "lengths", None) is not None and n > 1:  # outputs are put back in input order below
        order = np.asarray(length_order(dataset, list(range(n))))
        dataset = torch.utils.data.Subset(dataset, order.tolist())
    if shard and 1 < _dist.world() <= n:
        part = _infer(model, torch.utils.data.Subset(dataset, _dist.shard(n)), batch_size, device, workers,
                      (lambda k: progress(k * _dist.world())) if progress else None, precision, channels_last,
                      fold_bn if fold_bn is not None else n >= 64, collate)
        out = _dist.gather_rows(torch.from_numpy(part).to(device), n).cpu().numpy()
    else:
        out = _infer(model, dataset, batch_size, device, workers, progress, precision, channels_last, fold_bn, collate)
    if order is None:
        return out
    restored = np.empty_like(out)
    restored[order] = out
    return restored


@torch.inference_mode()
def infer_each(run_batch, dataset, batch_size: int, device, progress=None, precision: str = "no") -> list:
    """One output per item of ``dataset``, in its order, for tasks whose outputs are not one tensor row per item
    (transcripts, boxes): ``run_batch(batch)`` gives a batch's outputs; items with lengths run in batches of
    similar length, shortest first, and their outputs are put back in order."""
    order = length_order(dataset, list(range(len(dataset))))
    loader = make_loader(torch.utils.data.Subset(dataset, order), batch_size, 0, collate_fn=dataset.collate_fn)
    out: list = [None] * len(dataset)
    done = 0
    for x, _ in loader:
        with autocast(device, precision):
            outputs = run_batch(to_device(x, device))
        for k, o in enumerate(outputs):
            out[order[done + k]] = o
        done += len(outputs)
        if progress:
            progress(len(outputs))
    return out


def length_order(dataset, indices: list[int]) -> list[int]:
    """``indices`` shortest first where the dataset's items have lengths (texts: tokens), else as they are: batches
    of similar length pad little."""
    lengths = getattr(dataset, "lengths", None)
    return indices if lengths is None else sorted(indices, key=lengths.__getitem__)


def _infer(model, dataset, batch_size, device, workers, progress, precision, channels_last, fold_bn, collate_fn):
    loader = make_loader(dataset, batch_size, workers, collate_fn=collate_fn)
    batches = iter(loader)
    first = next(batches, None)
    if first is None:
        return np.zeros((0, 0), np.float32)
    nhwc = channels_last and isinstance(first[0], torch.Tensor)
    was_training = model.training
    model.eval()
    runner = model
    if nhwc and (len(dataset) >= 64 if fold_bn is None else fold_bn):
        runner = inference_copy(model, to_device(first[0][:2], device))
    out = []
    with torch.inference_mode():
        for x, _ in itertools.chain([first], batches):
            with autocast(device, precision):
                logits = runner(to_device(x, device, nhwc))
            out.append(logits.float().cpu())
            if progress:
                progress(len(out[-1]))
    model.train(was_training)
    return torch.cat(out).numpy()


def _logistic(z: np.ndarray, labels: np.ndarray, folds: int, class_weight, seed: int):
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV  # heavy: loaded on first use

    if folds >= 2:
        clf = LogisticRegressionCV(Cs=np.logspace(-4, 1, 6).tolist(), cv=folds, max_iter=2000, tol=1e-3,
                                   class_weight=class_weight, random_state=seed, scoring="neg_log_loss")
        clf.fit(z, labels)
        return clf, float(np.atleast_1d(clf.C_)[0])
    c = 0.1  # too few examples per class for cross-validation
    return LogisticRegression(C=c, max_iter=2000, class_weight=class_weight).fit(z, labels), c
