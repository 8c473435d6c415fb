"""The contract every task meets: targets, head, loss, selection score, decoding, metrics, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

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

    The training loop calls :meth:`loss` and :meth:`step_stats` per batch, :meth:`epoch_row` and
    :meth:`evaluate` per epoch and :meth:`selection_score` to keep the best epoch; a run calls
    :meth:`score` once on the evaluation split. Nothing outside a task's module branches on its name.
    """

    name = ""
    #: one line for ``--help`` and ``transferkit tasks``
    description = ""
    #: settings this task reads (:class:`~transferkit.config.Option`), declared when it is registered
    options: tuple[Option, ...] = ()
    #: metric names ``compare`` reports, the first is the headline (higher is better)
    compare_metrics: tuple[str, ...] = ()
    #: an ``item_values`` key holding 0/1 right/wrong outcomes, for McNemar's test (None: no such outcome)
    paired_test_metric: str | None = None
    #: the modalities this task reads (None: every one)
    modalities: tuple[str, ...] | None = None
    #: settings this task wants where the user gave none (after the modality's, before the strategy's)
    defaults: dict = {}
    #: domain adaptation (``--target``) can train this task: a backbone's pooled features feed its head
    adaptable = False
    #: compared metrics where lower is better (error rates): their gain is the baseline's value minus the run's
    lower_is_better: tuple[str, ...] = ()
    #: compare's reference strategy (the gain column is measured against it)
    baseline_strategy = "scratch"
    #: compare adds the modality's classic no-transfer line (TF-IDF, MFCC statistics + logistic regression)
    classic_baseline = False
    #: what the run's ``labels.json`` lists (the report's header)
    labels_are = "classes"

    # -- where a task reads its own data and inputs (targets richer than one label per input); the defaults
    #    hand everything to the modality -------------------------------------------------------------------
    @classmethod
    def read_data(cls, cfg, **split):
        """The run's labelled data when this task has its own formats (boxes, transcripts); None: the modality's."""
        return None

    @classmethod
    def saved_data(cls, run_dir: Path, modality):
        """The split an earlier run saved (``--resume``)."""
        return SavedSplit(run_dir, modality.name, modality.inputs_are_files)

    @classmethod
    def supports(cls, strategy) -> bool:
        """Whether ``strategy`` (a strategy class or object) can train this task's head: by default, any that trains
        something."""
        return bool(strategy.trains_backbone or strategy.probe_first or strategy.probe_after)

    #: the task in messages ("speech recognition"; default: its name), why a strategy it refuses cannot work, the fix
    title = ""
    unsupported = "the new head must be trained"
    unsupported_fix = "Use --task asr with a Whisper backbone for a zero-shot baseline, or choose another strategy"

    @classmethod
    def train_defaults(cls, cfg, backbone) -> dict:
        """Settings this task wants for this backbone where the user gave none (after the backbone's, before the
        strategy's)."""
        return cls.defaults

    def scores_untrained(self) -> bool:
        """The model as loaded already does this task (a pretrained recogniser): the loop scores it on val before
        training and keeps it if no epoch beats it."""
        return False

    def run_batch(self, model, batch):
        """Outputs of one served batch (what :meth:`per_item` splits)."""
        return model(batch)

    @classmethod
    def default_strategy(cls, modality, items) -> str:
        """``--strategy auto``: the modality's choice for classification."""
        return modality.default_strategy(items)

    @classmethod
    def pipeline(cls, modality, backbone, cfg, data=None):
        """(train transform, eval transform, data config)."""
        return modality.pipeline(backbone, cfg, data)

    def eval_transform(self, meta):
        """The saved run's inference transform; None: the modality's."""
        return None

    def dataset(self, modality, backbone, items, transform, cfg=None, fill=False, progress=None):
        return modality.dataset(backbone, items, transform, cfg, fill=fill, progress=progress)

    def contract(self, modality, data_config) -> dict[str, Any]:
        """What an exported model's consumer must do to its inputs (export's contract); the modality's by default."""
        return modality.contract(data_config)

    def example_input(self, modality, data_config):
        """A random batch the model must take (checked before training); None: no such check."""
        return modality.example_input(data_config)

    @classmethod
    def for_saved(cls, run_dir: Path, meta: dict, cfg, backbone) -> "Task":
        """The task object of a finished run (predict, evaluate, serve), from what the run folder saved."""
        return cls()

    def with_data(self, data) -> "Task":
        """This (loaded) task scoring ``data`` read afresh (``evaluate RUN DATA``)."""
        return self

    def rescore(self, outputs, items, labels: list[str]) -> dict[str, Any]:
        """Metrics of ``outputs`` on ``items`` without writing anything (``evaluate``)."""
        raise NotImplementedError

    def collate(self, modality, backbone, xs: list):
        """Served inputs (as the modality's ``decode_request`` returned them) → one batch."""
        return modality.collate(backbone, xs)

    def per_item(self, outputs) -> list:
        """A served batch's outputs → one entry per input (what :meth:`decode` reads)."""
        return list(outputs.float().cpu().numpy())

    def rows(self, predictions: list[dict]) -> list[dict]:
        """``predict --csv`` / the printed table: flat rows of the predictions."""
        return [{k: v for k, v in p.items() if not isinstance(v, (list, dict))} for p in predictions]

    def draw(self, predictions: list[dict], out_dir: Path) -> list[Path]:
        """Annotated copies of the inputs (``predict --draw``); tasks without a picture to draw refuse."""
        raise ConfigError(f"--draw is not available for {self.name} runs", "a detection run", "Leave --draw out")

    #: what an exported model outputs (export's contract)
    output_help = "logits (apply softmax for probabilities)"

    def export(self, pred, fmt: str, out_dir: Path, meta: dict, check_inputs) -> dict[str, Any] | None:
        """Export a run this task's own way (``check_inputs()`` gives real inputs for the parity check); None: the
        generic path (one input tensor → one output tensor)."""
        return None

    def infer(self, model, dataset, batch_size: int, device, progress=None, **options):
        """Model outputs over ``dataset`` in its order (classification: logits (N, C))."""
        return infer_logits(model, dataset, batch_size, device, progress=progress, **options)

    @classmethod
    def for_run(cls, cfg, data, backbone, data_config: dict[str, Any]) -> "Task":
        """The run's own task object (class weights, transcripts, boxes, decoders …), built from its settings, data,
        backbone and preprocessing; the registered class is never written to."""
        return cls()

    def build_model(self, backbone, meta_or_cfg: dict[str, Any]) -> torch.nn.Module:
        """Backbone + this task's head. ``meta_or_cfg`` holds ``head`` and ``labels``. Changes no task state."""
        raise NotImplementedError

    def loss(self, outputs, targets) -> torch.Tensor:
        raise NotImplementedError

    def step_stats(self, outputs, targets) -> dict[str, torch.Tensor]:
        """Sums to accumulate on the device per training batch (no host sync)."""
        return {}

    def epoch_row(self, sums: dict[str, torch.Tensor], seen: int) -> dict[str, float]:
        return {k: (v / max(seen, 1)).item() for k, v in sums.items()}

    def evaluate(self, model, loader, to_device, gather=None) -> dict[str, float]:
        """Validation row (``val_*`` keys) of one epoch.

        With several processes ``loader`` holds this process's share of val; ``gather(tensor)`` returns the
        rows of every process's share in val's order (each item once), so the row is computed on all of val.
        """
        raise NotImplementedError

    def selection_score(self, row: dict[str, float]) -> tuple:
        """Higher is better: the loop keeps the epoch that maximises it."""
        raise NotImplementedError

    def score(self, run_dir: Path, outputs: np.ndarray, items, labels: list[str], split: str) -> dict[str, Any]:
        """Metrics on the evaluation split; writes the per-item predictions file."""
        raise NotImplementedError

    def summary(self, metrics: dict[str, Any]) -> str:
        raise NotImplementedError

    def decode(self, outputs: np.ndarray, labels: list[str], topk: int = 3) -> list[dict[str, Any]]:
        """Model outputs → predictions a user reads (labels with probabilities …)."""
        raise NotImplementedError

    def item_values(self, run_dir: Path, labels: list[str]) -> dict[str, np.ndarray]:
        """Per evaluation item, values whose mean is each compared metric (pseudo-values where a metric is
        not a mean), in the evaluation split's order; empty if the task has none."""
        return {}

    def fit_probe(self, model, feats: np.ndarray, targets: np.ndarray, cfg) -> dict[str, Any] | None:
        """Fit the head on cached frozen features (the fast probe); None if the task has none."""
        return None

    def report_sections(self, run_dir: Path, metrics: dict, meta: dict, modality) -> list[str]:
        """HTML sections of the run report that belong to this task."""
        return []
