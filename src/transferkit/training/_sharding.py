"""What makes a run the same run on any number of processes: one sequence of global batches, each process
taking its stride of every batch, and augmentation seeded per item rather than per process."""

from __future__ import annotations

import random

import numpy as np
import torch

from .. import _dist
from ..errors import ConfigError


def check_global_batch(batch_size: int) -> None:
    """The global batch must split evenly: every process takes the same share of every batch."""
    world = _dist.world()
    if batch_size % world:
        raise ConfigError(f"batch_size={batch_size} cannot be split evenly over {world} processes",
                          f"a global batch size that is a multiple of {world}",
                          f"Use --batch-size {-(-batch_size // world) * world} (the batch is shared, not repeated)")


class GlobalBatches(torch.utils.data.Sampler):
    """Batches of ``batch_size`` indices from ``sampler`` (the global batch, as one process would take it);
    each process yields its stride ``batch[rank::world]``. A last partial batch too small to give every
    process an item is dropped on all of them (they must take the same number of steps)."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        check_global_batch(batch_size)
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        r, w = _dist.rank(), _dist.world()
        batch: list[int] = []
        for i in self.sampler:
            batch.append(int(i))
            if len(batch) == self.batch_size:
                yield batch[r::w]
                batch = []
        if len(batch) >= w and not self.drop_last:
            yield batch[r::w]

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full + int(not self.drop_last and rest >= _dist.world())


class SeededItems(torch.utils.data.Dataset):
    """Item ``i`` is drawn under its own seed (from ``seed`` and ``i``): random augmentation depends neither on
    the process or DataLoader worker that reads the item nor on the order of reading. The caller's random
    state is restored after each item."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        s = (self.seed * 1_000_003 + int(i)) % 2**63
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s % 2**32)
        try:
            return self.dataset[i]
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])

    def __getattr__(self, name: str):  # held, collate_fn, items: the wrapped dataset's
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
