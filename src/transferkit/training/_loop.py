"""The training loop: one screen, top to bottom. Strategies decide what trains; hooks do the rest."""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._runfolder import CHECKPOINT, atomic_write
from ..config import RunConfig
from ..features import make_loader, to_device
from ..strategies import Strategy
from ._progress import progress_bar

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


def make_optimizer(cfg: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def epoch_sampler(cfg: RunConfig, labels: list[int], generator: torch.Generator):
    if cfg.sampler == "balanced":
        counts = np.bincount(labels)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        return torch.utils.data.WeightedRandomSampler(weights, len(labels), generator=generator)
    return torch.utils.data.RandomSampler(range(len(labels)), generator=generator)


@torch.inference_mode()
def evaluate_loss_acc(model, loader, device, nhwc: bool = False) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    n = 0
    for x, y in loader:
        y = torch.as_tensor(y, device=device)
        logits = model(to_device(x, device, nhwc)).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    return (loss_sum / max(n, 1)).item(), (correct / max(n, 1)).item()


def train_loop(model, strategy: Strategy, train_ds, val_ds, cfg: RunConfig, run_dir: Path,
               select_on_val: bool, class_weights: torch.Tensor | None = None,
               resume: dict | None = None, on_epoch_end=None) -> list[dict]:
    """Train ``model`` in place; return the per-epoch history.

    Args:
        select_on_val: keep the best epoch by validation accuracy and stop early on it. Only when
            val is not the split the headline metrics are reported on.
        resume: a checkpoint dict from ``checkpoint.pt`` to continue from.
        on_epoch_end: ``callable(epoch, row)`` hook (e.g. a live log or a test's kill switch).
    """
    from accelerate import Accelerator

    from ..config import fill_modality_defaults, resolve_precision

    fill_modality_defaults(cfg, model.backbone.modality)
    cpu = cfg.cpu or not torch.cuda.is_available()
    accelerator = Accelerator(cpu=cpu, mixed_precision=resolve_precision(cfg.precision, "cpu" if cpu else "cuda"))
    device = accelerator.device
    strategy.prepare(model)
    # NHWC: 1.15-1.35x faster fine-tuning steps for Lite0 on CPU (bench/step_throughput.py), and the layout
    # tensor cores want. Parameters go back to the contiguous layout before the function returns.
    nhwc = cfg.channels_last and model.backbone.modality == "image"
    if nhwc:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, strategy.param_groups(model))
    labels = list(train_ds.items.labels)
    steps_per_epoch = max(1, len(labels) // cfg.batch_size)  # drop_last keeps BatchNorm away from 1-item batches
    total = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(int(cfg.warmup_epochs * steps_per_epoch), total))
    model, optimizer = accelerator.prepare(model, optimizer)
    anchor = None
    if cfg.l2sp > 0:  # L2-SP: pull the backbone toward where it started, not toward zero
        anchor = {n: p.detach().clone() for n, p in accelerator.unwrap_model(model).backbone.named_parameters()}
    history, best, bad_epochs, start = [], None, 0, 0
    if resume:
        accelerator.unwrap_model(model).load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if anchor is not None:
            anchor = {k: v.to(device) for k, v in resume["anchor"].items()}
        history, best, bad_epochs, start = resume["history"], resume["best"], resume["bad_epochs"], resume["epoch"]
        log.info("resumed at epoch %d/%d", start + 1, cfg.epochs)
    weight = class_weights.to(device) if class_weights is not None else None
    val_loader = make_loader(val_ds, cfg.batch_size * 2, cfg.workers, collate_fn=getattr(val_ds, "collate_fn", None)) if val_ds is not None and len(val_ds) else None

    for epoch in range(start, cfg.epochs):
        # Batch order and augmentation depend on (seed, epoch) only, so a resumed run is the same run.
        generator = seed_everything(cfg.seed * 1000 + epoch)
        loader = make_loader(train_ds, cfg.batch_size, cfg.workers, drop_last=len(labels) > cfg.batch_size,
                             sampler=epoch_sampler(cfg, labels, generator), generator=generator,
                             collate_fn=getattr(train_ds, "collate_fn", None))
        strategy.on_epoch_start(accelerator.unwrap_model(model), epoch)
        strategy.train_mode(accelerator.unwrap_model(model))
        t0, loss_sum, correct, seen = time.time(), torch.zeros((), device=device), torch.zeros((), device=device), 0
        with progress_bar(f"epoch {epoch + 1}/{cfg.epochs}", len(loader)) as update:
            for x, y in loader:
                x = to_device(x, device, nhwc)
                y = torch.as_tensor(y).to(device, non_blocking=True)
                with accelerator.autocast():
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=cfg.label_smoothing)
                if anchor is not None:
                    bb = accelerator.unwrap_model(model).backbone
                    loss = loss + cfg.l2sp / 2 * sum(((p - anchor[n]) ** 2).sum()
                                                    for n, p in bb.named_parameters() if p.requires_grad)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                # Accumulate on the device: no host sync per step.
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                update(1)
        row = {"epoch": epoch + 1, "train_loss": (loss_sum / max(seen, 1)).item(),
               "train_acc": (correct / max(seen, 1)).item(), "lr": scheduler.get_last_lr()[-1],
               "seconds": round(time.time() - t0, 2)}
        if val_loader is not None:
            row["val_loss"], row["val_acc"] = evaluate_loss_acc(model, val_loader, device, nhwc)
        history.append(row)
        stop = False
        if select_on_val and val_loader is not None:
            score = (row["val_acc"], -row["val_loss"])
            if best is None or score > tuple(best["score"]):
                best, bad_epochs = {"score": list(score), "epoch": epoch + 1}, 0
                state = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
                atomic_write(run_dir / "best.pt", lambda p: torch.save(state, p))
            else:
                bad_epochs += 1
                stop = cfg.patience > 0 and bad_epochs >= cfg.patience
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        ckpt = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history, "best": best,
                "bad_epochs": bad_epochs, "anchor": anchor}
        atomic_write(run_dir / CHECKPOINT, lambda p: torch.save(ckpt, p))
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if stop:
            log.info("early stop: no val improvement for %d epoch(s); best epoch %d", bad_epochs, best["epoch"])
            break

    model = accelerator.unwrap_model(model)
    if nhwc:
        model.to(memory_format=torch.contiguous_format)
    if best is not None and (run_dir / "best.pt").is_file():
        model.load_state_dict(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True))
        log.info("kept the best epoch by val accuracy: %d", best["epoch"])
    return history
