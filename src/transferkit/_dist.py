"""Several processes as torch.distributed sees them (set up by accelerate, torchrun or ``--processes``).

Every function here is the identity in a single process, so callers never branch on the world size.
Work is sharded by striding (item ``i`` on rank ``i % world``): gathering interleaves the shards back
into the original order and drops the padding of the short shards, so no item is counted twice and
none is dropped.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def shard(n: int) -> list[int]:
    """This process's share of ``range(n)``: every ``world``-th index from ``rank``."""
    return list(range(rank(), n, world()))


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The rows of every process's shard (from :func:`shard`), back in the original order: ``n`` rows."""
    w = world()
    if w == 1:
        return local
    rows = -(-n // w)  # the longest shard
    padded = local.new_zeros((rows, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded.contiguous())
    return torch.stack(parts, 1).reshape(rows * w, *local.shape[1:])[:n]  # row j of rank r is item j*w + r


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over all processes (a new tensor; ``value`` is unchanged)."""
    if world() == 1:
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out


def broadcast(obj):
    """The main process's ``obj`` on every process (any picklable value)."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_module(module: torch.nn.Module) -> None:
    """Copy the main process's parameters and buffers into ``module`` on every process."""
    if world() == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def barrier() -> None:
    if world() > 1:
        dist.barrier()
