"""The training loop: one screen, top to bottom. The task gives loss and score, the strategy decides what
trains, named callbacks keep the best epoch, add penalties and checkpoint. No modality or task is named here."""

from __future__ import annotations

import logging
import math
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from .. import _dist
from ..config import RUN_DEFAULTS, RunConfig, fill_defaults, resolve_precision
from ..errors import TrainingError
from ..features import length_order, make_loader, to_device
from ..strategies import Strategy
from ._callbacks import L2SP, BestEpoch, Checkpoint
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


def train_loop(model, strategy: Strategy, task, train_ds, val_ds, cfg: RunConfig, run_dir: Path,
               select_on_val: bool, channels_last: bool = False, resume: dict | None = None,
               on_epoch_end=None, epoch_scores=None, select_by=None) -> list[dict]:
    """Train ``model`` in place; return the per-epoch history.

    Args:
        task: gives the loss, per-batch statistics, the validation row and the selection score.
        select_on_val: keep the best epoch by the task's validation score and stop early on it. Only
            when val is not the split the headline metrics are reported on.
        channels_last: run 4-d inputs and the model NHWC (the modality decides).
        resume: a checkpoint dict from ``checkpoint.pt`` to continue from.
        on_epoch_end: ``callable(epoch, row)`` hook (e.g. a live log or a test's kill switch).
        epoch_scores: ``callable(model) -> dict`` of more scores for each epoch's row (a target's, say).
        select_by: what ranks the epochs when ``select_on_val`` (``selection_score(row)``, ``beats(row, best)``);
            default the task. Epochs may then be chosen without a val split, on ``epoch_scores``.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs  # heavy: loaded on first use
    from accelerate.state import AcceleratorState

    cfg = fill_defaults(RunConfig(**cfg.to_dict()), RUN_DEFAULTS)  # a config made by hand: the run's defaults

    cpu = cfg.cpu or not torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, "cpu" if cpu else "cuda")
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
        AcceleratorState._reset_state()  # an earlier run in this process used another precision (a text run, then images)
    # Backbones may hold parameters the task's forward never uses (a text model's pooler): DDP must look for them.
    accelerator = Accelerator(cpu=cpu, mixed_precision=precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    device, raw = accelerator.device, model
    strategy.prepare(raw)
    _sync_batchnorm(raw, strategy, device)
    if channels_last:  # 1.15-1.35x faster CNN steps on CPU (bench/step_throughput.py); undone before returning
        raw.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, strategy.param_groups(raw))
    labels = list(train_ds.items.labels)
    samples = strategy.epoch_samples(len(labels), cfg.batch_size, cfg.epochs)
    steps_per_epoch = strategy.steps_per_epoch(len(labels))
    total_steps = steps_per_epoch * cfg.epochs
    schedule = inverse_decay(total_steps) if cfg.schedule == "inverse" else \
        warmup_cosine(int(cfg.warmup_epochs * steps_per_epoch), total_steps)
    peak = strategy.peak_scale(total_steps)
    if peak != 1.0:
        log.info("%s: learning rates × %g for this %d-step run", strategy.name, peak, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: peak * schedule(step))
    optimizer = accelerator.prepare_optimizer(optimizer)
    raw.to(device)
    penalties = [L2SP(raw.backbone, cfg.l2sp)] if cfg.l2sp > 0 else []
    val_loader = make_loader(Subset(val_ds, length_order(val_ds, _dist.shard(len(val_ds)))), cfg.batch_size * 2,
                             cfg.workers, collate_fn=getattr(val_ds, "collate_fn", None)) \
        if val_ds is not None and len(val_ds) else None
    objective = strategy.objective(task)
    lengths = getattr(train_ds, "lengths", None) if strategy.length_batches else None
    best = BestEpoch(select_by or task, run_dir, cfg.patience,
                     active=select_on_val and (val_loader is not None or select_by is not None))
    checkpoint = Checkpoint(run_dir, cfg.checkpoint_every, best=best, l2sp=penalties[0] if penalties else None)
    history, start, wrapped = [], 0, None
    if resume:
        history, start = checkpoint.restore(resume, raw, optimizer, scheduler)
        log.info("resumed at epoch %d/%d", start + 1, cfg.epochs)
    if _dist.world() > 1:
        log.info("%d processes share each batch of %d (%d each)", _dist.world(), cfg.batch_size,
                 cfg.batch_size // _dist.world())

    def move(x, y):
        return to_device(x, device, channels_last), torch.as_tensor(y).to(device, non_blocking=True)

    if best.active and val_loader is not None and resume is None and task.scores_untrained():  # the model as loaded is a candidate (epoch 0)
        history.append({"epoch": 0, **task.evaluate(raw, val_loader, move, partial(_dist.gather_rows, n=len(val_ds)))})
        best.update(-1, history[-1], raw)
    for epoch in range(start, cfg.epochs):
        # Batch order and augmentation depend on (seed, epoch) only, so a resumed run is the same run.
        # Every process draws the same global batches and takes its stride of each; items carry their own seeds.
        epoch_seed = cfg.seed * 1000 + epoch
        generator = seed_everything(epoch_seed)
        batches = GlobalBatches(epoch_sampler(cfg, labels, generator, samples), cfg.batch_size,
                                samples > cfg.batch_size, lengths, generator)
        loader = make_loader(SeededItems(train_ds, epoch_seed), None, cfg.workers, batch_sampler=batches,
                             generator=generator, collate_fn=getattr(train_ds, "collate_fn", None))
        strategy.on_epoch_start(raw, epoch)
        module = strategy.train_module(raw)
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        if trainable != wrapped:  # DDP all-reduces what trains when it is wrapped: wrap again when that changes
            model, wrapped = (accelerator.prepare_model(module) if _dist.world() > 1 or wrapped is None else module), trainable
        strategy.train_mode(raw)
        t0, sums, seen = time.time(), {}, 0
        with progress_bar(f"epoch {epoch + 1}/{cfg.epochs}", len(loader)) as update:
            for x, y in loader:
                x, y = move(x, y)
                with accelerator.autocast():
                    outputs = model(x)
                loss = objective.loss(outputs, y) + sum(p.penalty(raw) for p in penalties)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                # Sums stay on the device: no host sync per step.
                for k, v in {"train_loss": loss.detach() * len(y), **objective.step_stats(outputs, y)}.items():
                    sums[k] = sums[k] + v if k in sums else v
                seen += len(y)
                update(1)
        sums, seen = {k: _dist.all_sum(v) for k, v in sums.items()}, int(_dist.all_sum(torch.tensor(seen, device=device)))
        row = {"epoch": epoch + 1, **objective.epoch_row(sums, seen), "lr": scheduler.get_last_lr()[-1],
               "seconds": round(time.time() - t0, 2)}
        if not math.isfinite(row["train_loss"]):  # checked before anything of this epoch is written
            raise TrainingError(f"The training loss became {row['train_loss']} in epoch {epoch + 1}",
                                "a finite loss", "Lower --lr (or --backbone-lr-mult), or use --precision no")
        if val_loader is not None:
            row.update(task.evaluate(raw, val_loader, move, partial(_dist.gather_rows, n=len(val_ds))))
        if epoch_scores is not None:
            row.update(epoch_scores(raw))
        history.append(row)
        stop = _dist.broadcast(best.update(epoch, row, raw))  # decided once, by the main process
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        checkpoint.save(epoch + 1, raw, optimizer, scheduler, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if stop:
            break

    if channels_last:
        raw.to(memory_format=torch.contiguous_format)
    best.restore(raw)
    for row in history:
        row["kept"] = int(best.best is not None and row["epoch"] == best.best["epoch"])
    _dist.sync_module(raw)  # the best epoch's weights were read by the main process
    return history


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
