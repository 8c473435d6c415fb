"""The contract every task meets: targets, head, loss, selection score, decoding, metrics, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _runfolder as rf
from ..config import Option, declare
from ..data import SavedSplit
from ..errors import ConfigError
from ..features import infer_logits

_TASKS: dict[str, type["Task"]] = {}


def register_task(cls: type["Task"]) -> type["Task"]:
    """Register a task class by its ``name`` (a class decorator) and declare its options. The registry holds
    constructors, as timm's holds model constructors: each run builds its own task object (:meth:`Task.for_run`,
    :meth:`Task.for_saved`), so nothing a run learns is ever stored on a registered object."""
    declare(f"task {cls.name}", *cls.options)
    _TASKS[cls.name] = cls
    return cls


class Task:
    """What is learnt from the inputs (class labels, transcripts, boxes) and how it is scored.

    A task class is registered by name; each run builds its own object (:meth:`for_run`, or :meth:`for_saved` for a
    finished run) and nothing outside the task's module branches on its name. **Required** (every task defines
    them): :meth:`build_model`, :meth:`loss`, :meth:`evaluate` and :meth:`selection_score` (the loop, per batch and
    per epoch), :meth:`metrics` and :meth:`prediction_rows` (the evaluation split, once), :meth:`summary` and
    :meth:`decode` (predict, serve). Everything else is an optional hook with a working default. A task whose
    targets are richer than one label per input sets ``reads_inputs`` and defines the modality's input methods.
    """

    name = ""
    #: one line for ``--help``
    description = ""
    #: settings this task reads (:class:`~transferkit.config.Option`), declared when it is registered
    options: tuple[Option, ...] = ()
    #: metric names ``compare`` reports, the first is the headline (higher is better)
    compare_metrics: tuple[str, ...] = ()
    #: compared metrics where lower is better (error rates): their gain is the baseline's value minus the run's
    lower_is_better: tuple[str, ...] = ()
    #: an ``item_values`` key holding 0/1 right/wrong outcomes, for McNemar's test (None: no such outcome)
    paired_test_metric: str | None = None
    #: compare's reference strategy (the gain column is measured against it)
    baseline_strategy = "scratch"
    #: compare adds the modality's classic no-transfer line (TF-IDF, MFCC statistics + logistic regression)
    classic_baseline = False
    #: the backbone this task gets without ``--backbone`` (the first installed); empty: the modality's
    default_backbones: tuple[str, ...] = ()
    #: the modalities this task reads (None: every one)
    modalities: tuple[str, ...] | None = None
    #: settings this task wants where the user gave none (after the modality's, before the strategy's)
    defaults: dict = {}
    #: domain adaptation (``--target``) can train this task: a backbone's pooled features feed its head
    adaptable = False
    #: what the run's ``labels.json`` lists (the report's header)
    labels_are = "classes"
    #: predictions.csv's columns (default: the first row's keys)
    prediction_columns: tuple[str, ...] = ()
    #: what an exported model outputs (export's contract)
    output_help = "logits (apply softmax for probabilities)"
    #: False: the modality reads, preprocesses and batches this task's inputs (classification). True: the task's
    #: targets are richer than one label per input (boxes, transcripts), so the task itself defines the modality's
    #: input methods — ``pipeline``, ``dataset``, ``eval_transform``, ``collate``, ``example_input``, ``contract``,
    #: with the modality's signatures — and :func:`~transferkit.tasks.inputs_of` hands them out.
    reads_inputs = False
    #: the head is a dense network only the loop trains (detector heads, segmentation decoders): never fitted on
    #: cached features, never left frozen
    loop_trained_head = False
    #: the task in messages ("speech recognition"; default: its name), why a strategy it refuses cannot work, the fix
    title = ""
    unsupported = "the new head must be trained"
    unsupported_fix = "Use --task asr with a Whisper backbone for a zero-shot baseline, or choose another strategy"

    # -- required ------------------------------------------------------------------------------------------------
    def build_model(self, backbone, meta: dict[str, Any]) -> torch.nn.Module:
        """Backbone + this task's head. ``meta`` holds ``head``, ``labels`` and ``data_config``. Changes no task
        state."""
        raise NotImplementedError

    def loss(self, outputs, targets) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model, loader, to_device, gather=None) -> dict[str, float]:
        """Validation row (``val_*`` keys) of one epoch.

        With several processes ``loader`` holds this process's share of val; ``gather(tensor)`` returns the
        rows of every process's share in val's order (each item once), so the row is computed on all of val.
        """
        raise NotImplementedError

    @classmethod
    def selection_score(cls, row: dict[str, float]) -> tuple:
        """Higher is better: the loop keeps the epoch that maximises it."""
        raise NotImplementedError

    @classmethod
    def beats(cls, row: dict, best: dict) -> bool:
        """Whether the validation ``row`` of an epoch should replace the ``best`` kept so far (rows may carry
        per-item values under ``_`` keys that :meth:`evaluate` adds for a paired test; they are never logged)."""
        return cls.selection_score(row) > cls.selection_score(best)

    def metrics(self, outputs, items, labels: list[str]) -> dict[str, Any]:
        """Metrics of the model's ``outputs`` on ``items`` (the run's evaluation split, or ``evaluate RUN DATA``)."""
        raise NotImplementedError

    def prediction_rows(self, outputs, items, labels: list[str]) -> list[dict[str, Any]]:
        """One row per prediction for ``predictions.csv`` (its columns are the first row's keys)."""
        raise NotImplementedError

    @classmethod
    def summary(cls, metrics: dict[str, Any]) -> str:
        """One line of the headline metrics (log and console)."""
        raise NotImplementedError

    def decode(self, outputs, labels: list[str], topk: int = 3) -> list[dict[str, Any]]:
        """Model outputs → predictions a user reads (labels with probabilities, boxes, transcripts …)."""
        raise NotImplementedError

    # -- the run's own object ------------------------------------------------------------------------------------
    @classmethod
    def for_run(cls, cfg, data, backbone, data_config: dict[str, Any]) -> "Task":
        """The run's own task object (class weights, transcripts, boxes, decoders …), built from its settings, data,
        backbone and preprocessing; the registered class is never written to."""
        return cls()

    @classmethod
    def for_saved(cls, run_dir: Path, meta: dict, cfg, backbone) -> "Task":
        """The task object of a finished run (predict, evaluate, serve), from what the run folder saved."""
        return cls()

    def with_data(self, data) -> "Task":
        """This (saved) task scoring ``data`` read afresh (``evaluate RUN DATA``)."""
        return self

    # -- data and strategy -----------------------------------------------------------------------------------
    @classmethod
    def read_data(cls, cfg, **split):
        """The run's labelled data when this task has its own formats (boxes, transcripts); None: the modality's."""
        return None

    @classmethod
    def recognises(cls, path: Path) -> str | None:
        """What of this task's own layout ``path`` shows (e.g. "images/ + masks/ folders"), when no other task could
        mean it; None by default. Another task reading such data says to use this one."""
        return None

    @classmethod
    def saved_data(cls, run_dir: Path, modality):
        """The split an earlier run saved (``--resume``)."""
        return SavedSplit(run_dir, modality.name, modality.inputs_are_files)

    @classmethod
    def default_strategy(cls, modality, items) -> str:
        """``--strategy auto``: fine-tuning for a head only the loop trains, else the modality's choice for these
        training items."""
        return "finetune" if cls.loop_trained_head else modality.default_strategy(items)

    @classmethod
    def auto_candidates(cls, modality, items) -> tuple[str, ...]:
        """The strategies ``--strategy auto`` tries on these training items, cheapest first, chosen on val within
        ``--budget`` (one: it is used, nothing to choose)."""
        return (cls.default_strategy(modality, items),)

    @classmethod
    def supports(cls, strategy) -> bool:
        """Whether ``strategy`` (a strategy class or object) can train this task's head: any that trains something;
        for a head only the loop trains, one whose loop trains the backbone or the head beside it (no probe, no
        adapters alone)."""
        if cls.loop_trained_head:
            return bool(strategy.trains_backbone and not (strategy.probe_first or strategy.probe_after
                                                          or strategy.adapters_only))
        return bool(strategy.trains_backbone or strategy.probe_first or strategy.probe_after)

    @classmethod
    def train_defaults(cls, cfg, backbone) -> dict:
        """Settings this task wants for this backbone where the user gave none (after the backbone's, before the
        strategy's)."""
        return cls.defaults

    # -- the loop ------------------------------------------------------------------------------------------------
    def step_stats(self, outputs, targets) -> dict[str, torch.Tensor]:
        """Sums to accumulate on the device per training batch (no host sync)."""
        return {}

    def epoch_row(self, sums: dict[str, torch.Tensor], seen: int) -> dict[str, float]:
        return {k: (v / max(seen, 1)).item() for k, v in sums.items()}

    def scores_untrained(self) -> bool:
        """The model as loaded already does this task (a pretrained recogniser): the loop scores it on val before
        training and keeps it if no epoch beats it."""
        return False

    def fit_probe(self, model, feats: np.ndarray, targets: np.ndarray, cfg) -> dict[str, Any] | None:
        """Fit the head on cached frozen features (the fast probe); None if the task has none."""
        return None

    # -- scoring -------------------------------------------------------------------------------------------------
    def score(self, run_dir: Path, outputs, items, labels: list[str], split: str) -> dict[str, Any]:
        """Metrics on the evaluation split; writes ``predictions.csv`` (and what :meth:`save_outputs` adds)."""
        rf.write_rows(run_dir / rf.PREDICTIONS, self.prediction_rows(outputs, items, labels),
                      list(self.prediction_columns) or None)
        self.save_outputs(run_dir, outputs, items)
        return {"split": split, **self.metrics(outputs, items, labels)}

    def save_outputs(self, run_dir: Path, outputs, items) -> None:
        """Files beside predictions.csv that reports and ``compare`` read (detection: every box with its score)."""

    @classmethod
    def item_values(cls, run_dir: Path, labels: list[str]) -> dict[str, np.ndarray]:
        """Per evaluation item, values whose mean is each compared metric (pseudo-values where a metric is
        not a mean), in the evaluation split's order; empty if the task has none."""
        return {}

    def report_sections(self, run_dir: Path, metrics: dict, meta: dict, modality) -> list[str]:
        """HTML sections of the run report that belong to this task."""
        return []

    # -- using a finished run ------------------------------------------------------------------------------------
    def infer(self, model, dataset, batch_size: int, device, progress=None, **options):
        """Model outputs over ``dataset`` in its order (classification: logits (N, C))."""
        return infer_logits(model, dataset, batch_size, device, progress=progress, **options)

    def app_output(self, gr, labels: list[str]):
        """The demo page's output component (``gr`` is the gradio module): label bars by default."""
        return gr.Label(num_top_classes=min(5, len(labels)), label="prediction")

    def app_value(self, prediction: dict, given) -> Any:
        """One decoded prediction → the output component's value (``given``: the page's input)."""
        return {lab: p for lab, p in prediction.get("topk", [])}

    def check_request(self, x, data_config: dict) -> None:
        """Raise :class:`~transferkit.errors.DataError` when one decoded served input cannot go through this
        run's model (``serve`` answers that request alone with the reason, before batching)."""

    def run_batch(self, model, batch):
        """Outputs of one served batch (what :meth:`per_item` splits)."""
        return model(batch)

    def per_item(self, outputs) -> list:
        """A served batch's outputs → one entry per input (what :meth:`decode` reads)."""
        return list(outputs.float().cpu().numpy())

    def rows(self, predictions: list[dict]) -> list[dict]:
        """``predict --csv`` / the printed table: flat rows of the predictions."""
        return [{k: v for k, v in p.items() if not isinstance(v, (list, dict))} for p in predictions]

    def draw(self, predictions: list[dict], out_dir: Path) -> list[Path]:
        """Annotated copies of the inputs (``predict --draw``); tasks without a picture to draw refuse."""
        raise ConfigError(f"--draw is not available for {self.name} runs", "a detection or segmentation run",
                          "Leave --draw out")

    def write(self, predictions: list[dict], out_dir: Path, overlays: bool = False) -> list[Path]:
        """Output files of the predictions (``predict --out``: segmentation masks); tasks without any refuse."""
        raise ConfigError(f"--out is not available for {self.name} runs", "a segmentation run",
                          "Use --json or --csv for the predictions")

    def export(self, pred, fmt: str, out_dir: Path, meta: dict, check_inputs) -> dict[str, Any] | None:
        """Export a run this task's own way (``check_inputs()`` gives real inputs for the parity check); None: the
        generic path (one input tensor → one output tensor)."""
        return None
