"""A whole run: data → backbone → strategy → loop → evaluation → run folder."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _dist
from .. import _runfolder as rf
from .._launch import announce_run_dir, join_process_group
from ..config import RunConfig, load_config_file, resolve_config
from ..data import LabelledData
from ..errors import ConfigError, RunFolderError
from ..reports import write_run_report
from ..tasks import inputs_of
from ._callbacks import BestEpoch, Callback, ChannelsLast, Checkpoint, EpochHook, EpochScores, L2SP, Validate
from ._loop import train_loop
from ._plan import Plan, epoch_dataset, plan_run
from ._progress import progress_bar
from ._tracking import Tracking, tracker_names

log = logging.getLogger("transferkit")


@dataclass
class Run:
    """A finished run folder and what it measured."""

    path: Path
    config: RunConfig
    metrics: dict[str, Any]
    history: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def _run_name(cfg: RunConfig) -> str:
    stem = Path(cfg.data.rstrip("/")).stem or "data"
    bb = (cfg.backbone or "default").split(":", 1)[-1].split("/")[-1]
    return f"{stem}-{cfg.strategy.replace(':', '')}-{bb}-{datetime.now():%Y%m%d-%H%M%S}"


def _new_run_dir(cfg: RunConfig) -> Path:
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--output {out} is a file", "a folder to hold run folders", "Choose a folder")
    if cfg.name:
        path = out / cfg.name
        if path.exists():
            raise RunFolderError(f"Run folder {path} already exists", "a new run name",
                                 f"Choose another --name, or continue it with --resume {path}")
    else:
        base = out / _run_name(cfg)
        path, i = base, 1
        while path.exists():
            path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / rf.LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _run(cfg: RunConfig, data: LabelledData, run_dir: Path | None, resume_state, on_epoch_end, target=None,
         adopted: dict | None = None, since: float | None = None) -> Run:
    """One run into ``run_dir`` (a new folder when None). ``adopted``: a model already trained (auto's kept
    candidate: its ``state``, ``history`` and ``probe``), scored and saved here with nothing trained again.
    ``since``: when the run's clock started (auto's run counts its candidates' time)."""
    t_start = since or time.time()
    join_process_group(cfg.cpu)
    tracker_names(cfg)  # a misspelt tracker fails before anything is written
    plan = plan_run(cfg, data, target)
    cfg = plan.cfg  # the run's resolved settings, read-only from here on
    fresh, created = resume_state is None, run_dir is None
    run_dir = run_dir or _dist.broadcast(_new_run_dir(cfg) if _dist.is_main() else None)  # one folder, the main's
    announce_run_dir(run_dir)
    level = log.level  # the run logs at INFO to its train.log; the caller's level comes back after it
    handler = _attach_log(run_dir) if _dist.is_main() else None
    tracking = Tracking(cfg, run_dir, cfg.track_group)
    hooks = ([tracking.epoch] if tracking.trackers else []) + _hooks(on_epoch_end)
    try:
        if fresh and _dist.is_main():
            _write_inputs(plan, run_dir)
        _describe(plan, run_dir)
        model = plan.task.build_model(plan.backbone, {"head": cfg.head, "labels": data.classes_,
                                                      "data_config": plan.data_config})
        _check_input_size(model, inputs_of(plan.task, plan.modality).example_input(plan.data_config), cfg)
        plan.adapt.before_training(plan)
        probe_info: dict[str, Any] = {}
        if adopted is None:
            eval_out, history = _trained(plan, model, run_dir, resume_state, hooks, probe_info)
        else:
            model.load_state_dict(adopted["state"])
            history, probe_info = adopted["history"], dict(adopted.get("probe") or {})
            eval_out = _infer_eval(plan, model.to(plan.device))
        plan.adapt.after_training(plan, model, history)
        if not _dist.is_main():  # the main process writes the run folder; the others return what it measured
            return Run(run_dir, cfg, _dist.broadcast(None), history)
        run = _finish(plan, model, run_dir, eval_out, history, probe_info, t_start)
        tracking.finish(run_dir, run.metrics)
        return run
    except BaseException:
        if created and _dist.is_main() and not (run_dir / rf.CHECKPOINT).exists():
            handler.close()  # release train.log before the folder goes
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping yet
        raise
    finally:
        tracking.close()
        if handler is not None:
            handler.close()
            log.removeHandler(handler)
        log.setLevel(level)


def _trained(plan: Plan, model, run_dir: Path, resume_state, hooks: list, probe_info: dict):
    """The strategy's steps (probe first, the loop, probe after); the evaluation split's outputs and the history."""
    eval_out = None
    if plan.strategy.probe_first and resume_state is None:
        eval_out = _probe(plan, model, probe_info, final=not plan.strategy.trains_backbone)
    history = _train(plan, model, run_dir, resume_state, hooks) if plan.strategy.trains_backbone else []
    if plan.strategy.probe_after:
        eval_out = _probe(plan, model, probe_info, final=True, trained=True)
    elif eval_out is None:  # trained by the loop, or used as loaded (zero-shot)
        eval_out = _infer_eval(plan, model)
    return eval_out, history


def _hooks(on_epoch_end) -> list:
    """What a caller asked to run after every epoch: nothing, ``fn(epoch, row)``, a :class:`Callback`, or a list."""
    if on_epoch_end is None:
        return []
    return list(on_epoch_end) if isinstance(on_epoch_end, (list, tuple)) else [on_epoch_end]


def _write_inputs(plan: Plan, run_dir: Path) -> None:
    """What a fresh run folder holds before training: the resolved config, labels, the exact split, bad files."""
    plan.cfg.save(run_dir / rf.CONFIG)
    rf.write_json(run_dir / rf.LABELS, plan.data.classes_)
    rf.write_json(run_dir / rf.SPLITS, _splits_record(plan.data))
    bad = getattr(plan.data, "bad_files_", [])
    (run_dir / rf.BAD_FILES).write_text("".join(f"{p}\t{r}\n" for p, r in bad))


def _describe(plan: Plan, run_dir: Path) -> None:
    data, strategy = plan.data, plan.strategy
    log.info("data: %s (%s)", data.summary(), plan.modality.name)
    if getattr(data, "bad_files_", None):
        log.info("skipped %d bad file(s); listed in %s", len(data.bad_files_), run_dir / rf.BAD_FILES)
    chosen = plan.cfg.extra.get("backbone_chosen")
    log.info("backbone %s (%d features%s), task %s, strategy %s, evaluating on %s%s", plan.backbone.name,
             plan.backbone.num_features, f"; {chosen}" if chosen else "", plan.task.name, strategy.name, plan.eval_split,
             "" if plan.select_on_val and strategy.uses_val else " (no test split: val is not used for model selection)"
             if plan.eval_split != "test" else " (the final epoch is kept)")
    log.info("preprocessing: %s", ", ".join(f"{k} {v}" for k, v in plan.data_config.items()))
    if _dist.world() > 1:
        log.info("world size %d: every pass over the data is shared by %d processes", _dist.world(), _dist.world())


def _probe(plan: Plan, model, info: dict, final: bool, trained: bool = False) -> np.ndarray | None:
    """Fit the task's head on the backbone's features of train; with ``final`` (the head is the model's last word),
    its outputs on the evaluation split — lp-ft fine-tunes on, so it extracts no evaluation features."""
    data = plan.data
    # features of weights this run has just ``trained`` are never read again: not cached (nor hashed)
    feats = {s: plan.features(plan.backbone, data.splits_[s], s, cache=not trained)
             for s in dict.fromkeys(["train", plan.eval_split] if final else ["train"])}
    t0, fitted = time.time(), {}
    if _dist.is_main():  # one fit; the others receive the head
        fitted = plan.adapt.probe(plan.task, model, feats["train"], np.asarray(data.splits_["train"].labels), plan.cfg)
        fitted["head_seconds"] = round(time.time() - t0, 2)
        log.info("probe head: %s", fitted)
    info.update(_dist.broadcast(fitted))
    _dist.sync_module(model.head)
    if not final:
        return None
    with torch.no_grad():
        return model.head.to("cpu")(torch.from_numpy(feats[plan.eval_split])).numpy()


def _train(plan: Plan, model, run_dir: Path, resume_state, hooks: list) -> list[dict]:
    """The loop over the training split (with the adaptation hook's items), and the callbacks this run needs."""
    data, strategy, cfg = plan.data, plan.strategy, plan.cfg
    train_ds = plan.adapt.training_items(epoch_dataset(plan, data.splits_["train"], plan.train_tf, "train"),
                                         lambda: epoch_dataset(plan, plan.adapt.target.items, plan.train_tf, "target"))
    val_ds = epoch_dataset(plan, data.splits_["val"], plan.eval_tf, "val") \
        if len(data.splits_["val"]) and strategy.uses_val else None
    select_by = plan.adapt.select_by()  # None: the task's val score ranks the epochs
    scores = plan.adapt.epoch_scores(plan)
    selects = select_by is not None or plan.select_on_val and strategy.uses_val and val_ds is not None
    callbacks = [
        ChannelsLast() if plan.nhwc else None,
        Validate(plan.task, val_ds, cfg.batch_size * 2, cfg.workers,
                 score_untrained=selects and resume_state is None and plan.task.scores_untrained())
        if val_ds is not None else None,
        EpochScores(scores) if scores is not None else None,
        BestEpoch(select_by or plan.task, run_dir, cfg.patience, active=selects),
        L2SP(cfg.l2sp) if cfg.l2sp > 0 else None,
        Checkpoint(run_dir, cfg.checkpoint_every, resume=resume_state),
        *(h if isinstance(h, Callback) else EpochHook(h) for h in hooks)]
    history = train_loop(model, strategy, plan.task, train_ds, cfg, callbacks)
    model.to(plan.device)
    return history


def _infer_eval(plan: Plan, model):
    items = plan.data.splits_[plan.eval_split]
    with progress_bar(f"evaluate {plan.eval_split}", len(items)) as update:
        return plan.task.infer(model, plan.dataset(items), plan.cfg.batch_size * 2, plan.device, progress=update,
                               workers=plan.cfg.workers, precision=plan.cfg.precision, channels_last=plan.nhwc,
                               shard=True)


def _finish(plan: Plan, model, run_dir: Path, eval_out, history: list[dict], probe_info: dict, t_start: float) -> Run:
    """Score the evaluation split once, save the model, write metrics.json last, then the report."""
    cfg, data, task, strategy = plan.cfg, plan.data, plan.task, plan.strategy
    _write_history(run_dir, history)
    metrics = task.score(run_dir, eval_out, data.splits_[plan.eval_split], data.classes_, plan.eval_split)
    metrics.update(plan.adapt.score(model, run_dir, data.classes_))
    metrics.update(task=task.name, modality=plan.modality.name, strategy=strategy.name, backbone=cfg.backbone,
                   selection=_selection(strategy, plan.select_on_val, cfg.select),
                   seconds=round(time.time() - t_start, 2), kept_epoch=_kept_epoch(history),
                   probe=probe_info or None, n_train=len(data.splits_["train"]), leakage=getattr(data, "leakage_", None))
    if "auto" in cfg.extra:  # --strategy auto: every candidate with its val score and time, and why one was kept
        metrics["auto"] = cfg.extra["auto"]
    model.cpu()
    meta = {"task": task.name, "modality": plan.modality.name, "backbone": plan.backbone.spec,
            "backbone_name": cfg.backbone, "pretrained_cfg": plan.backbone.pretrained_cfg,
            "data_config": plan.data_config, "head": cfg.head, "labels": data.classes_, "strategy": strategy.name}
    strategy.finish(model)
    plan.backbone.save_extra(run_dir)
    rf.save_model(run_dir, model, meta)
    rf.write_json(run_dir / rf.METRICS, metrics)  # written last: its presence marks a finished run
    _dist.broadcast(metrics)
    for leftover in (rf.CHECKPOINT, "best.pt"):
        (run_dir / leftover).unlink(missing_ok=True)
    log.info("%s: %s", plan.eval_split, task.summary(metrics))
    log.info("run folder: %s (%.1f s)", run_dir, time.time() - t_start)
    run = Run(run_dir, cfg, metrics, history)
    _write_report(run)
    return run


def _selection(strategy, select_on_val: bool, select: str) -> str:
    """metrics.json's word on how the kept model was chosen."""
    if not strategy.trains_backbone:
        return "C by cross-validation on train" if strategy.probe_first else "the model as loaded (nothing trained)"
    if strategy.probe_after:
        return "final epoch; head C by cross-validation on train"
    if select == "dev":
        return "epoch with the lowest Deep Embedded Validation estimate of the target loss"
    if select_on_val:
        return "best val epoch"
    return "final epoch (--select last)" if select == "last" else "final epoch (val not used for selection)"


def _kept_epoch(history: list[dict]) -> int | None:
    """The epoch whose weights the run keeps (0: the model as loaded, when no trained epoch beat it on val)."""
    return next((int(r["epoch"]) for r in history if r.get("kept")), int(history[-1]["epoch"]) if history else None)


def _check_input_size(model, example, cfg: RunConfig) -> None:
    """One forward pass on a random batch: a backbone that cannot take this input size (a ViT built for 224 px)
    fails here with the size to use, not with a traceback mid-epoch."""
    if example is None:
        return
    try:
        with torch.no_grad():
            model.eval()(example)
    except (RuntimeError, AssertionError, ValueError) as exc:
        native = model.backbone.pretrained_cfg.get("input_size")
        raise ConfigError(f"Backbone {cfg.backbone} cannot take inputs of shape {list(example.shape[1:])} "
                          f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
                          f"its input size{f' {native[-1]} px' if native else ''}",
                          "Leave --image-size out (the backbone's own size), or choose a backbone that takes any size") from None


def _splits_record(data: LabelledData) -> dict:
    """splits.json: the exact inputs and labels of each split, and the groups of a grouped split."""
    out: dict[str, Any] = {k: {"inputs": v.inputs, "labels": v.labels, **data.split_extras(k)}
                           for k, v in data.splits_.items()}
    for k, groups in getattr(data, "split_groups_", {}).items():
        out[k]["groups"] = groups
    return out


def _write_history(run_dir: Path, history: list[dict]) -> None:
    if history:  # every row's keys: a resumed or epoch-0 row may hold columns the first lacks
        rf.write_rows(run_dir / rf.HISTORY, history, list(dict.fromkeys(k for row in history for k in row)))


def _write_report(run: Run) -> None:
    try:
        write_run_report(run.path)
    except Exception as exc:  # a report failure must not lose a finished run
        log.warning("report not written: %s", exc)


def load_run(path: str | Path) -> Run:
    path = rf.check_run_dir(Path(path))
    if not (path / rf.METRICS).is_file():
        raise RunFolderError(f"Run {path} has not finished (no {rf.METRICS})", "a finished run",
                             f"Resume it with `transferkit train --resume {path}`")
    cfg = resolve_config(load_config_file(path / rf.CONFIG))
    history = []
    if (path / rf.HISTORY).is_file():
        with open(path / rf.HISTORY) as fh:
            history = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    return Run(path, cfg, json.loads((path / rf.METRICS).read_text()), history)
