"""Use a finished run folder: predict and evaluate. Never imports training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import _runfolder as rf
from .backbones import backbone_from_spec
from .data import IMAGE_EXTENSIONS, Items, eval_transform
from .errors import DataError
from .evaluation import classification_metrics
from .features import infer_logits
from .heads import TransferModel, build_head
from .inputs import make_dataset


class Predictor:
    """A trained model loaded from its run folder (``tk.load(path)``)."""

    def __init__(self, path: str | Path, device: str | None = None):
        self.path = Path(path)
        meta, state = rf.read_model(self.path)
        self.meta = meta
        self.labels: list[str] = meta["labels"]
        self.modality: str = meta.get("modality", "image")
        backbone = backbone_from_spec(meta["backbone"], meta["pretrained_cfg"], self.path)
        self.model = TransferModel(backbone, build_head(meta["head"], backbone.num_features, len(self.labels)))
        self.model.load_state_dict(state)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.transform = eval_transform(meta["data_config"]) if self.modality == "image" else None

    def fast_model(self) -> torch.nn.Module:
        """The model as predict and serve run it (``_fold.inference_copy``: BatchNorm folded, checked on a
        random batch, channels-last for images). Built once; feed it channels-last batches."""
        if getattr(self, "_fast", None) is None:
            from ._fold import inference_copy

            self._fast = self.model
            if self.modality == "image":
                example = torch.randn(2, *self.meta["data_config"]["input_size"], device=self.device)
                self._fast = inference_copy(self.model, example)
        return self._fast

    def _dataset(self, inputs: Sequence[str], labels: Sequence[int] | None = None):
        items = Items(list(map(str, inputs)), list(labels) if labels is not None else [0] * len(inputs))
        return make_dataset(self.model.backbone, items, self.transform)

    def predict_proba(self, inputs: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, C) for image paths (or texts, for a text model)."""
        logits = infer_logits(self.fast_model(), self._dataset(inputs), batch_size, self.device, fold_bn=False)
        return torch.from_numpy(logits).softmax(1).numpy()

    def predict(self, inputs: Sequence[str] | str, topk: int = 3, batch_size: int = 32) -> list[dict[str, Any]]:
        """Top-k labels with probabilities for each input.

        Example:
            >>> tk.load("runs/ants").predict(["ant.jpg"])[0]["label"]
            'ants'
        """
        if isinstance(inputs, (str, Path)):
            inputs = [str(inputs)]
        if self.modality == "image":
            inputs = expand_image_inputs(inputs)
        probs = self.predict_proba(inputs, batch_size)
        k = min(topk, len(self.labels))
        out = []
        for inp, p in zip(inputs, probs):
            order = np.argsort(-p)[:k]
            out.append({"input": str(inp), "label": self.labels[order[0]], "probability": float(p[order[0]]),
                        "topk": [(self.labels[i], float(p[i])) for i in order]})
        return out


def expand_image_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given; folders expanded to their image files (recursively, sorted)."""
    out: list[str] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            out.append(str(p))
        else:
            raise DataError(f"Input {p} does not exist", "image files or folders of images", "Check the path")
    if not out:
        raise DataError("No images found in the inputs given", f"files ending in {', '.join(IMAGE_EXTENSIONS)}")
    from .data import check_image

    bad = [(f, r) for f in out if (r := check_image(Path(f)))]
    if bad:
        raise DataError(f"Cannot read {bad[0][0]}: {bad[0][1]}", "decodable images",
                        f"Remove it from the inputs ({len(bad)} unreadable in all)")
    return out


def load(path: str | Path, device: str | None = None) -> Predictor:
    """Load a finished run for prediction."""
    return Predictor(path, device)


def evaluate(path: str | Path, data: str | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Score a finished run: on its own evaluation split (reproduces ``metrics.json``), or on ``data``.

    ``data`` is scored whole (every image or row); its labels must be among the run's labels.
    """
    pred = load(path)
    run = Path(path)
    if data is None:
        split = json.loads((run / rf.METRICS).read_text())["split"] if (run / rf.METRICS).is_file() else "test"
        s = json.loads((run / "splits.json").read_text())[split]
        items = Items(s["inputs"], s["labels"])
    else:
        from .config import load_config_file, resolve_config
        from .inputs import data_from_config

        cfg = resolve_config({**load_config_file(run / rf.CONFIG), "data": str(data)})
        ds = data_from_config(cfg, val_fraction=0.0, test_fraction=0.0, shots=None).setup()
        unknown = [c for c in ds.classes_ if c not in pred.labels]
        if unknown:
            raise DataError(f"Label(s) {', '.join(unknown)} in {data} were not seen in training",
                            f"labels among {', '.join(pred.labels)}", "Remove those items or train a new run")
        rows = [(i, ds.classes_[lab]) for part in ds.splits_.values() for i, lab in zip(part.inputs, part.labels)]
        items = Items([i for i, _ in rows], [pred.labels.index(lab) for _, lab in rows])
        split = f"data {data}"
    logits = infer_logits(pred.fast_model(), pred._dataset(items.inputs, items.labels), batch_size, pred.device,
                          fold_bn=False)
    return {"split": split, **classification_metrics(items.labels, logits.argmax(1), pred.labels)}
