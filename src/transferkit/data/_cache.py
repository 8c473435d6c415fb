"""Decoded, pre-resized images held in memory, so each file is decoded and resized once per process.

A fine-tune over E epochs otherwise decodes and resizes every JPEG E times (plus once per epoch for
the validation split). The cache stores the output of a transform's ``Presize`` stage (uint8, short
side a little above the training size) keyed by (path, size, mtime, presize), so runs in one process
(``compare``: strategies × seeds) share it. It holds at most ``max_bytes``; least recently used
entries of other datasets make room, and images that still do not fit are decoded per use, with the
same result.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import torch

from ._images import load_rgb
from ._transforms import Presize

log = logging.getLogger("transferkit")


def default_cache_bytes() -> int:
    """A quarter of physical memory, at most 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(4 << 30, total // 4))


class ImageCache:
    """LRU store of presized uint8 images, bounded in bytes."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = default_cache_bytes() if max_bytes is None else int(max_bytes)
        self._store: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def _key(path: str, presize: Presize) -> tuple:
        st = os.stat(path)
        return (os.fspath(path), st.st_size, st.st_mtime_ns, presize)

    def take(self, paths: list[str], presize: Presize, fill: bool = True, progress=None,
             load=None) -> list[torch.Tensor | None]:
        """The held input of each path (``None`` where not held), decoding missing ones first if ``fill``.

        ``presize(load(path))`` is what is held: any modality's deterministic decode stage (``load``
        defaults to reading an RGB image).
        """
        load = load or load_rgb
        keys = []
        for p in paths:
            try:
                keys.append(self._key(p, presize))
            except OSError:
                keys.append(None)  # vanished file: the dataset's own decode reports it
        held: list[torch.Tensor | None] = [None] * len(paths)
        for i, k in enumerate(keys):
            if k is not None and k in self._store:
                self._store.move_to_end(k)
                held[i] = self._store[k]
        missing = [i for i, k in enumerate(keys) if k is not None and held[i] is None]
        if fill and missing and self.max_bytes > 0:
            self._fill(paths, keys, held, missing, set(k for k in keys if k is not None), lambda p: presize(load(p)),
                       progress)
        elif progress:
            progress(len(paths))
        return held

    def _fill(self, paths, keys, held, missing, protected, decode_path, progress) -> None:
        if progress:
            progress(len(paths) - len(missing))

        def decode(i):
            try:
                return i, decode_path(paths[i])
            except Exception:  # changed since the scan: left to the per-use decode, which reports it
                return i, None

        workers = max(1, min(8, os.cpu_count() or 1))
        chunk = 16 * workers
        done, full = 0, False
        # PIL releases the GIL while decoding and resizing, so threads use every core. Chunks, so that
        # decoding stops as soon as the bound is reached.
        with ThreadPoolExecutor(workers) as pool:
            while done < len(missing):
                batch = missing[done:done + chunk]
                done += len(batch)
                for i, img in pool.map(decode, batch):
                    if img is None:
                        continue
                    size = img.numel() * img.element_size()
                    while self.nbytes + size > self.max_bytes and self._evict_one(protected):
                        pass
                    if self.nbytes + size > self.max_bytes:
                        full = True
                        continue
                    self._store[keys[i]] = held[i] = img
                    self.nbytes += size
                if progress:
                    progress(len(batch))
                if full:
                    break
        if done < len(missing) or full:
            if progress:
                progress(len(missing) - done)
            log.info("image cache full (%.0f MiB): %d of %d images held, the rest decoded per use",
                     self.max_bytes / 2**20, sum(h is not None for h in held), len(paths))

    def _evict_one(self, protected: set) -> bool:
        for k in self._store:
            if k not in protected:
                t = self._store.pop(k)
                self.nbytes -= t.numel() * t.element_size()
                return True
        return False


_SHARED: ImageCache | None = None


def cache_for(cfg) -> ImageCache | None:
    """The process-wide cache bounded by a run's ``image_cache_mb`` (None: no config, or the cache turned off)."""
    if cfg is None or cfg.image_cache_mb == 0:
        return None
    return shared_cache(None if cfg.image_cache_mb is None else cfg.image_cache_mb << 20)


def held_inputs(cfg, paths: list[str], presize, fill: bool = False, progress=None) -> list | None:
    """The decoded inputs the run's cache holds for ``paths`` (decoding the missing ones with ``fill``); None
    without a cache (each item is then decoded when read)."""
    cache = cache_for(cfg)
    if cache is None:
        if progress:
            progress(len(paths))
        return None
    return cache.take(list(paths), presize, fill=fill, progress=progress)


def shared_cache(max_bytes: int | None = None) -> ImageCache:
    """The process-wide cache, bounded by ``max_bytes`` (default: ``default_cache_bytes()``) from now on."""
    global _SHARED
    if _SHARED is None:
        _SHARED = ImageCache()
    _SHARED.max_bytes = default_cache_bytes() if max_bytes is None else int(max_bytes)
    return _SHARED
