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
    process an item is dropped on all of them (they must take the same number of steps).

    With ``lengths`` (tokens per text), indices are sorted by length within windows of ``window`` batches and
    the batches are then shuffled with ``generator``: each batch pads little, and the order still depends on
    (seed, epoch) only.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool, lengths=None, generator=None, window: int = 50):
        check_global_batch(batch_size)
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.lengths, self.generator, self.window = lengths, generator, window

    def batches(self) -> list[list[int]]:
        """This epoch's global batches."""
        order, size = [int(i) for i in self.sampler], self.batch_size
        if self.lengths is not None:
            span = size * self.window
            order = [i for s in range(0, len(order), span) for i in sorted(order[s:s + span], key=self.lengths.__getitem__)]
        out = [order[s:s + size] for s in range(0, len(order), size)]
        if out and len(out[-1]) < size and (self.drop_last or len(out[-1]) < _dist.world()):
            out.pop()
        if self.lengths is not None:
            out = [out[i] for i in torch.randperm(len(out), generator=self.generator).tolist()]
        return out

    def __iter__(self):
        r, w = _dist.rank(), _dist.world()
        for batch in self.batches():
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
