"""The loop's callbacks, one protocol (as Lightning's ``Callback``): every hook is a no-op by default, and what a
resumed run needs is each callback's own ``state_dict``. The loop calls them in the order it is given them; it knows
none of them by name.

- :class:`ChannelsLast` runs the model NHWC while it trains;
- :class:`Validate` adds the task's validation row to every epoch (and scores the model as loaded, where the task
  asks);
- :class:`EpochScores` adds more scores to every epoch's row (a target's, for domain adaptation);
- :class:`BestEpoch` keeps the best epoch and stops early;
- :class:`L2SP` adds the L2-SP penalty to the loss;
- :class:`Checkpoint` writes what ``--resume`` continues from;
- :class:`EpochHook` calls a plain ``fn(epoch, row)`` (trackers, ``tune``'s pruning, ``auto``'s budget watch).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Subset

from .. import _dist
from .._runfolder import CHECKPOINT, atomic_write
from ..features import length_order, make_loader

log = logging.getLogger("transferkit")
BEST = "best.pt"


class Callback:
    """Hooks the loop calls; override the few a callback needs. ``loop`` is the running loop's state (``model``,
    ``optimizer``, ``scheduler``, ``epochs``, ``history``, ``start``, ``device``, ``move``, ``callbacks``). ``key``: the name of
    this callback's state in ``checkpoint.pt`` ("": it has none)."""

    key = ""

    def on_train_start(self, loop) -> None:
        """Before the first epoch (after the optimizer exists)."""

    def on_epoch_start(self, loop, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) trains."""

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | float:
        """A term added to every step's loss."""
        return 0.0

    def on_validation(self, loop, row: dict) -> None:
        """Add scores to the epoch's ``row`` (after it trained, before anything decides on it)."""

    def on_epoch_end(self, loop, row: dict) -> bool:
        """After the row is complete and in ``loop.history``; True asks the loop to stop after this epoch."""
        return False

    def on_train_end(self, loop) -> None:
        """After the last epoch (not when an exception ended training)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values (``--resume``)."""


class ChannelsLast(Callback):
    """The model and its 4-d inputs NHWC while training (1.15–1.35× faster CNN steps on CPU: bench/step_throughput.py);
    the saved weights are in the usual layout again afterwards."""

    def on_train_start(self, loop) -> None:
        loop.channels_last = True
        loop.model.to(memory_format=torch.channels_last)

    def on_train_end(self, loop) -> None:
        loop.model.to(memory_format=torch.contiguous_format)


class Validate(Callback):
    """The task's validation row on all of ``val_ds`` (sharded, gathered) after every epoch. ``score_untrained``:
    the model as loaded is scored first, as epoch 0, and is a candidate for the kept epoch (a pretrained speech
    recogniser already does the task)."""

    def __init__(self, task, val_ds, batch_size: int, workers: int | None, score_untrained: bool = False):
        self.task, self.val_ds, self.score_untrained = task, val_ds, score_untrained
        self.loader = make_loader(Subset(val_ds, length_order(val_ds, _dist.shard(len(val_ds)))), batch_size, workers,
                                  collate_fn=getattr(val_ds, "collate_fn", None))

    def _row(self, loop) -> dict:
        return self.task.evaluate(loop.model, self.loader, loop.move, partial(_dist.gather_rows, n=len(self.val_ds)))

    def on_epoch_start(self, loop, epoch: int) -> None:
        if self.score_untrained and epoch == 0 and not loop.history:
            loop.history.append({"epoch": 0, **self._row(loop)})

    def on_validation(self, loop, row: dict) -> None:
        row.update(self._row(loop))


class EpochScores(Callback):
    """``scores(model) -> dict`` added to every epoch's row."""

    def __init__(self, scores: Callable[[torch.nn.Module], dict]):
        self.scores = scores

    def on_validation(self, loop, row: dict) -> None:
        row.update(self.scores(loop.model))


class BestEpoch(Callback):
    """Keeps the epoch with the best score (``ranker.beats(row, best)``, else ``ranker.selection_score(row)``: the
    task's validation score, or an adaptation method's) as a copy in ``best.pt``; stops after ``patience`` epochs
    without improvement; puts the kept weights back at the end and marks the kept row. Inactive when val must not
    be used for choices (the last epoch is kept)."""

    key = "best_epoch"

    def __init__(self, ranker, run_dir: Path, patience: int, active: bool):
        self.task, self.path, self.patience, self.active = ranker, Path(run_dir) / BEST, patience, active
        self.best: dict | None = None
        self.bad_epochs = 0
        self.improved = False  # in the last update

    def on_epoch_start(self, loop, epoch: int) -> None:
        if epoch == 0 and loop.history and loop.history[-1].get("epoch") == 0 and self.best is None:
            self.update(-1, loop.history[-1], loop.model)  # the model as loaded (Validate's epoch 0)

    def on_epoch_end(self, loop, row: dict) -> bool:
        return bool(_dist.broadcast(self.update(row["epoch"] - 1, row, loop.model)))  # decided by the main process

    def on_train_end(self, loop) -> None:
        self.restore(loop.model)
        for row in loop.history:
            row["kept"] = int(self.best is not None and row["epoch"] == self.best["epoch"])

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

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class L2SP(Callback):
    """L2-SP (Li et al. 2018): pull the backbone toward its pretrained weights, not toward zero. The anchor is the
    backbone as training starts (the pretrained weights; a resumed run restores the original anchor)."""

    key = "l2sp"

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.anchor: dict[str, torch.Tensor] = {}

    def on_train_start(self, loop) -> None:
        params = dict(loop.model.backbone.named_parameters())
        if not self.anchor:
            self.anchor = {n: p.detach().clone() for n, p in params.items()}
        else:  # restored from a checkpoint read onto the CPU
            self.anchor = {n: v.to(params[n].device) for n, v in self.anchor.items()}

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        return self.alpha / 2 * sum(((p - self.anchor[n]) ** 2).sum()
                                    for n, p in model.backbone.named_parameters() if p.requires_grad)

    def state_dict(self) -> dict:
        return {"anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self.anchor.values())).device if self.anchor else "cpu"
        self.anchor = {k: v.to(device) for k, v in state["anchor"].items()}


class Checkpoint(Callback):
    """Everything a resumed run needs, written atomically after any epoch that ends ``interval`` seconds or more
    after the last write (the start of training counts as one; ``interval`` 0: after every epoch). A killed run
    so repeats at most ``interval`` seconds of training when resumed, and replays them exactly: batches and
    augmentation depend on seed and epoch only, so the best epoch and best.pt are found again. Writing a text
    model and its AdamW state (270 MB for MiniLM) took 15% of a 10 s few-shot run when it was written after the
    first and the last epoch regardless. ``resume``: a ``checkpoint.pt`` to continue from."""

    def __init__(self, run_dir: Path, interval: float = 60.0, resume: dict | None = None):
        self.path = Path(run_dir) / CHECKPOINT
        self.interval, self.last, self.resume = interval, time.monotonic(), resume

    def on_train_start(self, loop) -> None:
        if self.resume is not None:
            loop.history, loop.start = self.restore(self.resume, loop.model, loop.optimizer, loop.scheduler,
                                                    loop.callbacks)
            log.info("resumed at epoch %d", loop.start + 1)

    def on_epoch_end(self, loop, row: dict) -> bool:
        self.save(row["epoch"], loop.model, loop.optimizer, loop.scheduler, loop.history, loop.callbacks)
        return False

    def save(self, epoch: int, model, optimizer, scheduler, history: list[dict], callbacks=()) -> None:
        if not _dist.is_main():  # one writer; every process holds the same weights and optimizer state
            return
        if time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "history": history,
                "callbacks": {c.key: c.state_dict() for c in callbacks if c.key}}
        atomic_write(self.path, lambda p: torch.save(ckpt, p))

    def restore(self, state: dict, model, optimizer, scheduler, callbacks=()) -> tuple[list[dict], int]:
        """Load ``state`` (a ``checkpoint.pt``); returns (history, the epoch to start from)."""
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        saved = state.get("callbacks")
        for c in callbacks:
            if c.key and saved is not None and c.key in saved:
                c.load_state_dict(saved[c.key])
            elif c.key and saved is None:  # a checkpoint written before callbacks kept their own state
                try:
                    c.load_state_dict(state)
                except KeyError:
                    pass
        return state["history"], state["epoch"]


class EpochHook(Callback):
    """A plain ``fn(epoch, row)`` after every epoch (0-based epoch): a tracker's log, ``tune``'s report and pruning,
    ``auto``'s budget watch, a test's kill switch. It may raise to end training."""

    def __init__(self, fn: Callable[[int, dict], None]):
        self.fn = fn

    def on_epoch_end(self, loop, row: dict) -> bool:
        self.fn(row["epoch"] - 1, row)
        return False
