"""Where a run starts: ``fit`` (a new run, auto's candidates, or one resumed from its checkpoint)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import _runfolder as rf
from .._launch import across_processes
from ..config import load_config_file, options, resolve_config
from ..data import LabelledData
from ..errors import RunFolderError
from ..modalities import get_modality
from ..tasks import get_task, read_data
from ._auto import adapt_candidates, auto_candidates, run_adapt_auto, run_auto
from ._fit import Run, _run

log = logging.getLogger("transferkit")


@across_processes
def fit(data: LabelledData | str | None = None, *, config_file: str | Path | None = None,
        resume: str | Path | None = None, on_epoch_end=None, target_data=None, **settings) -> Run:
    """Train a model on ``data`` with a pretrained backbone and a strategy; write a run folder.

    Args:
        data: a dataset object or a path (a folder of images or audio clips, a CSV/TSV/JSONL).
        config_file: YAML of settings; keyword ``settings`` override it (see :class:`RunConfig`).
        resume: a run folder to continue from its last checkpoint (with any number of processes).
        target_data: the ``--target`` inputs already read (a comparison reads them once for all its runs).
        processes: worker processes sharing each batch (DDP; default: one per GPU, else 1). Under
            ``torchrun`` or ``accelerate launch`` the processes are theirs and this is not needed.

    Example:
        >>> run = fit("photos/", backbone="packaged:efficientnet_lite0", strategy="lp-ft", epochs=5)
        >>> run.metrics["accuracy"]
    """
    if resume is not None:
        return _resume(Path(resume), on_epoch_end)
    if isinstance(data, (str, Path)):
        settings["data"] = str(Path(data).resolve())  # absolute: --resume and evaluate work from any folder
        data = None
    for key, option in options().items():
        if option.path and key != "data" and settings.get(key):
            settings[key] = str(Path(settings[key]).resolve())
    cfg = resolve_config(settings, config_file)
    if data is None:
        data = read_data(cfg)
    else:
        cfg.data = cfg.data or data.location
    candidates = auto_candidates(cfg, data)
    if len(candidates) > 1:
        return run_auto(cfg, data, candidates, on_epoch_end)
    methods = adapt_candidates(cfg)  # only with a strategy the user named
    if candidates:  # --strategy auto with one candidate: that is the strategy
        cfg.strategy = candidates[0]
        log.info("strategy: %s (auto, for %d training items)", cfg.strategy, len(data.splits_["train"]))
    if methods:
        return run_adapt_auto(cfg, data, methods, on_epoch_end)
    if cfg.budget is not None:  # nothing here chooses among candidates: say so rather than ignore it
        why = f"--strategy auto has one candidate here ({candidates[0]})" if candidates else \
            f"--strategy {cfg.strategy} is one strategy"
        log.warning("--budget %g has no effect: %s (it limits the candidates of --strategy auto and --adapt auto)",
                    cfg.budget, why)
    return _run(cfg, data, run_dir=None, resume_state=None, on_epoch_end=on_epoch_end, target=target_data)


def _resume(run_dir: Path, on_epoch_end) -> Run:
    rf.check_run_dir(run_dir)
    if (run_dir / rf.METRICS).is_file():
        raise RunFolderError(f"Run {run_dir} already finished (it has {rf.METRICS})", "an interrupted run",
                             "Start a new run instead; a finished run is never overwritten")
    if not (run_dir / rf.CHECKPOINT).is_file():
        raise RunFolderError(f"Run {run_dir} has no {rf.CHECKPOINT} to resume from", "a run interrupted after its first checkpoint "
                             "(--checkpoint-every seconds of training; 60 by default)", "Start the run again")
    cfg = resolve_config(load_config_file(run_dir / rf.CONFIG))
    try:
        state = torch.load(run_dir / rf.CHECKPOINT, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not a checkpoint: torch raises many types
        raise RunFolderError(f"{run_dir / rf.CHECKPOINT} is damaged ({type(exc).__name__})", "a checkpoint written "
                             "by an interrupted run", "Start the run again (the damaged checkpoint cannot be resumed)") from None
    modality = get_modality(cfg.modality or "image")
    data = get_task(cfg.task).saved_data(run_dir, modality)  # the split as saved, never re-made
    return _run(cfg, data, run_dir=run_dir, resume_state=state, on_epoch_end=on_epoch_end)
