"""Tasks by name (``--task``): each module is the one place that knows its targets, head, loss and metrics."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from ._base import _TASKS, Task, register_task


def tasks() -> dict[str, type[Task]]:
    return dict(_TASKS)


def read_data(cfg, modality=None, **split):
    """The labelled data of a run's config: read by its task when the task has its own formats (boxes), else by
    its modality (detected unless given)."""
    task = get_task(cfg.task)
    data = task.read_data(cfg, **split)
    if data is None and cfg.data:
        for other in _TASKS.values():  # data laid out for another task (images/ + masks/ read as two classes …)
            layout = other.recognises(Path(cfg.data)) if other is not task else None
            if layout:
                raise DataError(f"{cfg.data} holds {layout}, the layout of --task {other.name}; --task {task.name} "
                                "would read its folders as classes", f"data laid out for --task {task.name}",
                                f"Add --task {other.name}")
    return data or data_for(cfg, modality, **split)


def inputs_of(task, modality):
    """What reads, preprocesses and batches a task's inputs: the modality, or a task with its own (``reads_inputs``:
    boxes, transcripts) — ``pipeline``, ``dataset``, ``eval_transform``, ``collate``, ``example_input`` and
    ``contract``, with the modality's signatures. ``task`` is a task class or a run's task object."""
    return task if task.reads_inputs else modality


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name`` (``get_task(name)()`` is a fresh object with no run's state)."""
    if name not in _TASKS:
        raise ConfigError(f"Unknown task '{name}'", f"one of {', '.join(_TASKS)}", "Run `transferkit train --help` for what each does")
    return _TASKS[name]


from ..modalities import data_for
from . import asr, classification, detection, segmentation  # noqa: E402,F401  (register the built-in tasks)

__all__ = ["Task", "get_task", "inputs_of", "read_data", "register_task", "tasks"]
