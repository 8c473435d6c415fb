"""The loop's named callbacks: best epoch + early stopping, the L2-SP penalty, checkpoint + resume."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from .. import _dist
from .._runfolder import CHECKPOINT, atomic_write

log = logging.getLogger("transferkit")
BEST = "best.pt"


class BestEpoch:
    """Keeps the epoch with the task's best validation score (a copy in ``best.pt``); stops after
    ``patience`` epochs without improvement. Inactive when val must not be used for choices."""

    def __init__(self, task, run_dir: Path, patience: int, active: bool):
        self.task, self.path, self.patience, self.active = task, Path(run_dir) / BEST, patience, active
        self.best: dict | None = None
        self.bad_epochs = 0
        self.improved = False  # in the last update

    def update(self, epoch: int, row: dict, model: torch.nn.Module) -> bool:
        """Record ``row`` of ``epoch`` (0-based; -1: the model as loaded); True when training should stop. The
        row's per-item values (``_`` keys, for the task's paired test) are taken out of it here."""
        self.improved = False
        full = dict(row)
        for key in [k for k in row if k.startswith("_")]:
            del row[key]  # never logged nor written to history.csv
        if not self.active:
            return False
        full["epoch"] = epoch + 1
        if self.best is None or (self.task.beats(full, self.best["row"]) if "row" in self.best  # older checkpoints
                                 else self.task.selection_score(full) > tuple(self.best["score"])):
            self.improved = True
            self.best = {"score": list(self.task.selection_score(full)), "epoch": epoch + 1, "row": full}
            self.bad_epochs = 0
            if _dist.is_main():  # the others get the weights back from it (sync_module) at the end
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                atomic_write(self.path, lambda p: torch.save(state, p))
            return False
        self.bad_epochs += 1
        if self.patience > 0 and self.bad_epochs >= self.patience:
            log.info("early stop: no val improvement for %d epoch(s); best epoch %d", self.bad_epochs,
                     self.best["epoch"])
            return True
        return False

    def restore(self, model: torch.nn.Module) -> None:
        if self.best is not None and _dist.is_main() and self.path.is_file():
            model.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))
            log.info("kept the best epoch: %d", self.best["epoch"])

    def state(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class L2SP:
    """L2-SP (Li et al. 2018): pull the backbone toward its pretrained weights, not toward zero."""

    def __init__(self, backbone: torch.nn.Module, alpha: float):
        self.alpha = alpha
        self.anchor = {n: p.detach().clone() for n, p in backbone.named_parameters()}

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        return self.alpha / 2 * sum(((p - self.anchor[n]) ** 2).sum()
                                    for n, p in model.backbone.named_parameters() if p.requires_grad)

    def state(self) -> dict:
        return {"anchor": self.anchor}

    def load(self, state: dict) -> None:
        device = next(iter(self.anchor.values())).device
        self.anchor = {k: v.to(device) for k, v in state["anchor"].items()}


class Checkpoint:
    """Everything a resumed run needs, written atomically after any epoch that ends ``interval`` seconds or more
    after the last write (the start of training counts as one; ``interval`` 0: after every epoch). A killed run
    so repeats at most ``interval`` seconds of training when resumed, and replays them exactly: batches and
    augmentation depend on seed and epoch only, so the best epoch and best.pt are found again. Writing a text
    model and its AdamW state (270 MB for MiniLM) took 15% of a 10 s few-shot run when it was written after the
    first and the last epoch regardless."""

    def __init__(self, run_dir: Path, interval: float = 60.0, **callbacks):
        self.path = Path(run_dir) / CHECKPOINT
        self.interval, self.last = interval, time.monotonic()
        self.callbacks = {k: c for k, c in callbacks.items() if c is not None}

    def save(self, epoch: int, model, optimizer, scheduler, history: list[dict]) -> None:
        if not _dist.is_main():  # one writer; every process holds the same weights and optimizer state
            return
        if time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "history": history}
        for c in self.callbacks.values():
            ckpt.update(c.state())
        atomic_write(self.path, lambda p: torch.save(ckpt, p))

    def restore(self, state: dict, model, optimizer, scheduler) -> tuple[list[dict], int]:
        """Load ``state`` (a ``checkpoint.pt``); returns (history, the epoch to start from)."""
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for c in self.callbacks.values():
            c.load(state)
        return state["history"], state["epoch"]
