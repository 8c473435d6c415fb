"""Use a finished run folder: predict and evaluate. Never imports training."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import _runfolder as rf
from ._fold import inference_copy
from .backbones import backbone_from_spec
from .config import load_config_file, resolve_config
from .data import Items
from .errors import DataError, RunFolderError
from .modalities import get_modality
from .tasks import get_task, inputs_of, read_data


class Predictor:
    """A trained model loaded from its run folder (``tk.load(path)``): its task and modality decide
    how inputs are read and outputs decoded."""

    def __init__(self, path: str | Path, device: str | None = None, **overrides):
        self.path = Path(path)
        meta, state = rf.read_model(self.path)
        self.meta = meta
        self.labels: list[str] = meta["labels"]
        self.modality = get_modality(meta.get("modality", "image"))
        backbone = backbone_from_spec(meta["backbone"], meta["pretrained_cfg"], self.path)
        self.config = _saved_config(self.path, overrides)
        self.task = get_task(meta.get("task", "classify")).for_saved(self.path, meta, self.config, backbone)
        self.model = self.task.build_model(backbone, meta)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:  # model.json and the weights disagree (labels edited, files from two runs)
            first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc)[:200])
            raise RunFolderError(f"{self.path}: the weights do not fit the model {rf.MODEL_META} describes "
                                 f"({len(self.labels)} labels; {first[:200]})", f"{rf.MODEL_META} and "
                                 f"{rf.WEIGHTS} written by the same run", "Restore the run's own model.json (its "
                                 "labels list), or train the run again") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.inputs = inputs_of(self.task, self.modality)  # what reads and batches this run's inputs
        self.transform = self.inputs.eval_transform(meta, backbone)

    def fast_model(self) -> torch.nn.Module:
        """The model as predict and serve run it (``_fold.inference_copy``: BatchNorm folded, checked on a
        random batch, channels-last for 4-d inputs). Built once; feed it channels-last batches."""
        if getattr(self, "_fast", None) is None:
            self._fast = self.model
            example = self.inputs.example_input(self.meta["data_config"])
            if example is not None and self.modality.channels_last(None):
                self._fast = inference_copy(self.model, example.to(self.device))
        return self._fast

    def _dataset(self, inputs: Sequence[str]):
        items = Items(list(map(str, inputs)), [0] * len(inputs))  # labels are not read at inference
        return self.inputs.dataset(self.model.backbone, items, self.transform)

    def outputs(self, inputs: Sequence[str], batch_size: int = 32):
        """Raw model outputs for the inputs (paths, or texts for a text model): logits (N, C) for classification,
        per-image boxes for detection."""
        return self.task.infer(self.fast_model(), self._dataset(inputs), batch_size, self.device, fold_bn=False,
                               channels_last=self.modality.channels_last(None))

    def predict_proba(self, inputs: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, C) of a classification run."""
        return torch.from_numpy(self.outputs(inputs, batch_size)).softmax(1).numpy()

    def predict(self, inputs: Sequence[str] | str, topk: int = 3, batch_size: int = 32) -> list[dict[str, Any]]:
        """The task's predictions for each input (classification: top-k labels with probabilities).

        Example:
            >>> tk.load("runs/ants").predict(["ant.jpg"])[0]["label"]
            'ants'
        """
        if isinstance(inputs, (str, Path)):
            inputs = [str(inputs)]
        inputs = self.modality.expand_inputs(inputs)
        decoded = self.task.decode(self.outputs(inputs, batch_size), self.labels, topk)
        return [{"input": str(inp), **d} for inp, d in zip(inputs, decoded)]


def load(path: str | Path, device: str | None = None, **overrides) -> Predictor:
    """Load a finished run for prediction; ``overrides`` change settings that apply at inference
    (``score_threshold`` of a detection run)."""
    return Predictor(path, device, **overrides)


def evaluate(path: str | Path, data: str | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Score a finished run: on its own evaluation split (reproduces ``metrics.json``), or on ``data``.

    ``data`` is scored whole (every input or row); its labels must be among the run's labels.
    """
    pred = load(path)
    run = Path(path)
    if data is None:
        split, inputs, labels = rf.evaluation_split(run)
        items = Items(inputs, labels)
        gone = [i for i in items.inputs if not Path(i).is_file()] if pred.modality.inputs_are_files else []
        if gone:
            raise DataError(f"{len(gone)} of the run's {len(items)} {split} files are gone (e.g. {gone[0]}): the data "
                            "moved since training", f"the files listed in {run / 'splits.json'}",
                            "Evaluate on the data where it is now: `transferkit evaluate RUN DATA`")
    else:
        cfg = resolve_config({**pred.config.to_dict(), "data": str(data), "group_by": None, "shots": None})
        ds = read_data(cfg, pred.modality, val_fraction=0.0, test_fraction=0.0).setup()
        unknown = [c for c in ds.classes_ if c not in pred.labels]
        if unknown:
            raise DataError(f"Label(s) {', '.join(unknown)} in {data} were not seen in training",
                            f"labels among {', '.join(pred.labels)}", "Remove those items or train a new run")
        rows = [(i, ds.classes_[lab]) for part in ds.splits_.values() for i, lab in zip(part.inputs, part.labels)]
        items = Items([i for i, _ in rows], [pred.labels.index(lab) for _, lab in rows])
        split = f"data {data}"
    task = pred.task if data is None else pred.task.with_data(ds)
    return {"split": split, "task": task.name, **task.metrics(pred.outputs(items.inputs, batch_size), items, pred.labels)}


def _saved_config(run: Path, overrides: dict | None = None):
    saved = load_config_file(run / rf.CONFIG) if (run / rf.CONFIG).is_file() else {}
    return resolve_config({**saved, **{k: v for k, v in (overrides or {}).items() if v is not None}})
