"""The training loop: one screen, top to bottom. The strategy decides what trains and its objective gives the loss;
callbacks (``_callbacks``: one protocol) validate, keep the best epoch, add penalties, checkpoint and report. No
modality, task or adaptation method is named here."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .. import _dist
from ..config import RunConfig, resolve_precision
from ..errors import TrainingError
from ..features import make_loader, to_device
from ..strategies import Strategy
from ._progress import progress_bar
from ._sharding import GlobalBatches, SeededItems

log = logging.getLogger("transferkit")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def warmup_cosine(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def inverse_decay(total_steps: int, gamma_total: float = 20.0, power: float = 0.75):
    """lr × (1 + γ i)^-0.75 (Long et al.; Transfer-Learning-Library's schedule, γ = 0.001 over 20,000 iterations),
    with γ scaled so a run of any length follows the same curve: from 1 to 21^-0.75 ≈ 0.10 at its last step."""
    def factor(step: int) -> float:
        return (1.0 + gamma_total * step / max(1, total_steps)) ** -power

    return factor


def make_optimizer(cfg: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW, fused where PyTorch has the kernel: one AdamW step over MiniLM's 22 M parameters
    took 11 ms fused against 58 ms (foreach) on 2 CPU cores, a fifth of a training step's time."""
    kind = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.AdamW
    extra = dict(momentum=0.9, nesterov=True) if cfg.optimizer == "sgd" else {}
    try:
        return kind(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True, **extra)
    except (RuntimeError, TypeError):  # no fused kernel for these parameters' device or dtype
        return kind(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)


def epoch_sampler(cfg: RunConfig, labels: list[int], generator: torch.Generator, samples: int | None = None):
    samples = samples or len(labels)
    if cfg.sampler == "balanced":
        counts = np.bincount(labels)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        return torch.utils.data.WeightedRandomSampler(weights, samples, generator=generator)
    return torch.utils.data.RandomSampler(range(len(labels)), num_samples=samples, generator=generator)


@dataclass
class Loop:
    """What the running loop holds, as callbacks see it."""

    model: torch.nn.Module  # the model as built (not the DDP wrapper): what callbacks read and change
    optimizer: Any
    scheduler: Any
    device: torch.device
    callbacks: list
    epochs: int = 0  # the run's number of epochs
    history: list = field(default_factory=list)
    start: int = 0  # the first epoch to train (a resumed run's next)
    channels_last: bool = False

    def move(self, x, y):
        return to_device(x, self.device, self.channels_last), torch.as_tensor(y).to(self.device, non_blocking=True)


def train_loop(model, strategy: Strategy, task, train_ds, cfg: RunConfig, callbacks: Sequence = ()) -> list[dict]:
    """Train ``model`` in place on ``train_ds``; return the per-epoch history. ``cfg`` is the run's resolved
    config; ``task`` gives (through the strategy's objective) the loss and per-batch statistics; everything else —
    validation, the kept epoch, penalties, checkpoints, trackers — is a callback (``_callbacks``)."""
    accelerator = _accelerator(cfg)
    strategy.prepare(model)
    _sync_batchnorm(model, strategy, accelerator.device)
    loop = Loop(model, None, None, accelerator.device, [c for c in callbacks if c is not None], cfg.epochs)
    loop.optimizer, loop.scheduler, samples = _optimizer(loop, strategy, cfg, len(train_ds))
    loop.optimizer = accelerator.prepare_optimizer(loop.optimizer)
    model.to(loop.device)
    for c in loop.callbacks:
        c.on_train_start(loop)
    objective, wrapped, trained = strategy.objective(task), None, None
    lengths = getattr(train_ds, "lengths", None) if strategy.length_batches else None
    for epoch in range(loop.start, cfg.epochs):
        for c in loop.callbacks:
            c.on_epoch_start(loop, epoch)
        strategy.on_epoch_start(model, epoch)
        module = strategy.train_module(model)
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        if trainable != wrapped:  # DDP all-reduces what trains when it is wrapped: wrap again when that changes
            trained = accelerator.prepare_model(module) if _dist.world() > 1 or wrapped is None else module
            wrapped = trainable
        strategy.train_mode(model)
        row = _epoch(loop, trained, objective, _batches(cfg, train_ds, epoch, samples, lengths), accelerator, epoch)
        for c in loop.callbacks:
            c.on_validation(loop, row)
        loop.history.append(row)
        stop = [c.on_epoch_end(loop, row) for c in loop.callbacks]  # every callback sees every epoch
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        if any(stop):
            break
    for c in loop.callbacks:
        c.on_train_end(loop)
    _dist.sync_module(model)  # the kept epoch's weights were read by the main process
    return loop.history


def _accelerator(cfg: RunConfig):
    """accelerate's device, precision and DDP for this run."""
    from accelerate import Accelerator, DistributedDataParallelKwargs  # heavy: loaded on first use
    from accelerate.state import AcceleratorState

    cpu = cfg.cpu or not torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, "cpu" if cpu else "cuda")
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
        AcceleratorState._reset_state()  # an earlier run in this process used another precision (a text run, then images)
    # Backbones may hold parameters the task's forward never uses (a text model's pooler): DDP must look for them.
    return Accelerator(cpu=cpu, mixed_precision=precision,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def _optimizer(loop: Loop, strategy: Strategy, cfg: RunConfig, n: int):
    """The optimizer over the strategy's parameter groups, its learning-rate schedule, and the items per epoch."""
    optimizer = make_optimizer(cfg, strategy.param_groups(loop.model))
    samples = strategy.epoch_samples(n, cfg.batch_size, cfg.epochs)
    total_steps = strategy.steps_per_epoch(n) * cfg.epochs
    schedule = inverse_decay(total_steps) if cfg.schedule == "inverse" else \
        warmup_cosine(int(cfg.warmup_epochs * strategy.steps_per_epoch(n)), total_steps)
    peak = strategy.peak_scale(total_steps)
    if peak != 1.0:
        log.info("%s: learning rates × %g for this %d-step run", strategy.name, peak, total_steps)
    if _dist.world() > 1:
        log.info("%d processes share each batch of %d (%d each)", _dist.world(), cfg.batch_size,
                 cfg.batch_size // _dist.world())
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: peak * schedule(step)), samples


def _batches(cfg: RunConfig, train_ds, epoch: int, samples: int, lengths):
    """Epoch ``epoch``'s loader. Batch order and augmentation depend on (seed, epoch) only, so a resumed run is the
    same run; every process draws the same global batches and takes its stride of each; items carry their own seeds."""
    epoch_seed = cfg.seed * 1000 + epoch
    generator = seed_everything(epoch_seed)
    labels = list(train_ds.items.labels)
    batches = GlobalBatches(epoch_sampler(cfg, labels, generator, samples), cfg.batch_size,
                            samples > cfg.batch_size, lengths, generator)
    return make_loader(SeededItems(train_ds, epoch_seed), None, cfg.workers, batch_sampler=batches,
                       generator=generator, collate_fn=getattr(train_ds, "collate_fn", None))


def _epoch(loop: Loop, model, objective, loader, accelerator, epoch: int) -> dict:
    """One pass of optimizer steps; the epoch's training row (its sums stay on the device: no host sync per step)."""
    t0, sums, seen = time.time(), {}, 0
    with progress_bar(f"epoch {epoch + 1}", len(loader)) as update:
        for x, y in loader:
            x, y = loop.move(x, y)
            with accelerator.autocast():
                outputs = model(x)
            loss = objective.loss(outputs, y) + sum(c.penalty(loop.model) for c in loop.callbacks)
            loop.optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            loop.optimizer.step()
            loop.scheduler.step()
            for k, v in {"train_loss": loss.detach() * len(y), **objective.step_stats(outputs, y)}.items():
                sums[k] = sums[k] + v if k in sums else v
            seen += len(y)
            update(1)
    sums, seen = {k: _dist.all_sum(v) for k, v in sums.items()}, int(_dist.all_sum(torch.tensor(seen, device=loop.device)))
    row = {"epoch": epoch + 1, **objective.epoch_row(sums, seen), "lr": loop.scheduler.get_last_lr()[-1],
           "seconds": round(time.time() - t0, 2)}
    if not math.isfinite(row["train_loss"]):  # checked before anything of this epoch is written
        raise TrainingError(f"The training loss became {row['train_loss']} in epoch {epoch + 1}",
                            "a finite loss", "Lower --lr (or --backbone-lr-mult), or use --precision no")
    return row


def _sync_batchnorm(model, strategy: Strategy, device) -> None:
    """Batch statistics over the global batch where BatchNorm layers use them (SyncBatchNorm, GPUs only)."""
    if _dist.world() == 1:
        return
    # the layers that learn batch statistics: all with --bn train, else a head's own (a segmentation decoder's)
    learning = model if strategy.bn_policy() == "train" else getattr(model, "head", None)
    if learning is None or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in learning.modules()):
        return
    if device.type == "cuda":
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(learning)
    else:
        log.warning("BatchNorm layers use each process's own batch statistics (SyncBatchNorm needs GPUs)")
