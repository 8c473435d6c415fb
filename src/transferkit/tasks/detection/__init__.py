"""Object detection: boxes around the objects of each class. torchvision's Faster R-CNN on the backbone's stages
(FPN), COCO metrics through torchmetrics, box-aware augmentation through ``transforms.v2``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import _runfolder as rf
from ...config import Option
from ...data import held_inputs, split_settings
from ...errors import ConfigError
from ...features import infer_each
from .._base import Task, register_task
from ._data import DetectionData, DetectionDataset, DetPresize, DetTransform, box_ops, split_targets
from ._export import OUTPUT, export_onnx
from ._metrics import detection_metrics, headline, jackknife, mean_ap
from ._model import Detector
from ._report import save_drawn, sections

DETECTIONS = "detections.jsonl"


@register_task
class Detection(Task):
    name = "detect"
    description = "boxes around objects (Pascal VOC, COCO, YOLO or a CSV of boxes)"
    options = (
        Option("annotations", help="detect: a COCO JSON (or a folder holding one)", path=True),
        Option("images", help="detect: the folder COCO file names are relative to", path=True),
        Option("score_threshold", float, 0.5, "detect: boxes at or above this score are reported (and counted as "
               "true or false positives)", low=0.0, high=1.0, wanted="a score in [0, 1]"),
    )
    compare_metrics = ("map", "map_50")
    modalities = ("image",)
    loop_trained_head = True
    reads_inputs = True  # images with boxes: read, augmented and batched by the task
    #: AdamW at 3e-4 for the new FPN / RPN / RoI heads, the backbone at a tenth, batch 4 and about 270 optimiser
    #: steps: the recipe measured on raccoon (8 epochs of 136 images at batch 4: mAP@.5 0.941), as steps, so a
    #: smaller or larger set gets as many updates (docs/benchmarks.md)
    defaults = {"lr": 3e-4, "backbone_lr_mult": 0.1, "batch_size": 4, "steps": 270}
    default_size = 512

    def __init__(self, records: dict | None = None, classes: list[str] | None = None, threshold: float = 0.5):
        self.records = records or {}
        self.classes = classes or []
        self.threshold = threshold

    # -- data ------------------------------------------------------------------------------------------------
    @classmethod
    def read_data(cls, cfg, **split) -> DetectionData:
        given = [f"--{k.replace('_', '-')}" for k in ("shots", "group_by", "label_by") if getattr(cfg, k, None)]
        if given:
            raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to detection",
                              "the split by image (--val-fraction, --test-fraction, --split-seed) or the annotations' own",
                              f"Leave {', '.join(given)} out")

        return DetectionData(cfg.data, cfg.annotations, cfg.images, **{**split_settings(cfg), **split})

    @classmethod
    def saved_data(cls, run_dir: Path, modality) -> DetectionData:
        saved = rf.read_splits(run_dir)
        return DetectionData(run_dir, saved={k: v.get("records", []) for k, v in saved.items()})

    title = "detection"
    unsupported = "its head is trained by the loop, never fitted on cached features"
    unsupported_fix = "Use --strategy frozen for a frozen backbone (FPN, RPN and heads train)"

    @classmethod
    def for_run(cls, cfg, data, backbone=None, data_config=None) -> "Detection":
        return cls(data.records_, list(data.classes_), cfg.score_threshold)

    @classmethod
    def pipeline(cls, backbone, cfg, data=None):
        size = cfg.image_size or cls.default_size
        presize = DetPresize(size, round(size * 5 / 3))
        dc = {"min_size": size, "max_size": presize.max_side, "input_size": [3, size, size],
              "mean": list(backbone.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
              "std": list(backbone.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))}
        return DetTransform(presize, box_ops(cfg.augment), train=True), DetTransform(presize), dc

    def eval_transform(self, meta, backbone=None) -> DetTransform:
        dc = meta["data_config"]
        return DetTransform(DetPresize(dc["min_size"], dc["max_size"]))

    def dataset(self, backbone, items, transform, cfg=None, fill=False, progress=None):
        held = held_inputs(cfg, items.inputs, transform.presize, fill, progress)
        return DetectionDataset(items, self.records, transform, self.classes, transform.train, held)

    # -- model and loop ----------------------------------------------------------------------------------
    def build_model(self, backbone, meta) -> Detector:
        dc = meta.get("data_config") or {"min_size": self.default_size, "max_size": round(self.default_size * 5 / 3)}
        return Detector.for_backbone(backbone, len(meta["labels"]), dc["min_size"], dc["max_size"])

    def loss(self, outputs: dict, targets) -> torch.Tensor:
        return sum(outputs.values())

    def step_stats(self, outputs: dict, targets) -> dict[str, torch.Tensor]:
        return {f"train_{k.replace('loss_', '')}": v.detach() * len(targets) for k, v in outputs.items()}

    @torch.inference_mode()
    def evaluate(self, model, loader, to_device, gather=None) -> dict[str, float]:
        dets, gts = [], []
        model.eval()
        for x, y in loader:
            x, _ = to_device(x, y)
            dets += self.per_item(model(x))
            gts += [{k: v.cpu().numpy() for k, v in t.items()} for t in split_targets(x)]
        if not gts:
            return {}
        r = headline(mean_ap(dets, gts, sync=True))
        return {"val_map": r["map"], "val_map_50": r["map_50"]}

    @classmethod
    def selection_score(cls, row):
        return (row.get("val_map", 0.0), row.get("val_map_50", 0.0))

    @torch.inference_mode()
    def infer(self, model, dataset, batch_size: int, device, progress=None, **_) -> list[dict]:
        """Per image: boxes (x1 y1 x2 y2, original pixels), scores and 1-based labels, every score ≥ 0.05."""
        model.eval()
        return infer_each(lambda x: self.per_item(model(x)), dataset, min(batch_size, 8), device, progress)  # 8 at most

    # -- scoring ------------------------------------------------------------------------------------------
    def _truth(self, inputs) -> list[dict]:
        index = {c: i + 1 for i, c in enumerate(self.classes)}
        recs = [self.records.get(p, {"boxes": [], "labels": [], "ignore": []}) for p in inputs]
        return [{"boxes": r["boxes"], "labels": [index.get(lab, 0) for lab in r["labels"]], "ignore": r["ignore"]}
                for r in recs]

    prediction_columns = ("input", "label", "score", "x1", "y1", "x2", "y2")

    def metrics(self, outputs, items, labels) -> dict[str, Any]:
        return detection_metrics(outputs, self._truth(items.inputs), labels, self.threshold)

    def prediction_rows(self, outputs, items, labels) -> list[dict]:
        """One row per box at or above the score threshold."""
        return [dict(zip(self.prediction_columns, (inp, labels[int(lab) - 1], f"{s:.4f}", *(f"{v:.1f}" for v in box))))
                for inp, d in zip(items.inputs, outputs)
                for box, s, lab in zip(d["boxes"], d["scores"], d["labels"]) if s >= self.threshold]

    def save_outputs(self, run_dir, outputs, items) -> None:
        """detections.jsonl: every box of every image (scores ≥ 0.05) with its truth, for the report and compare."""
        with open(run_dir / DETECTIONS, "w", encoding="utf-8") as fh:
            for inp, d, g in zip(items.inputs, outputs, self._truth(items.inputs)):
                fh.write(json.dumps({"input": inp, "gt": g, "det": {k: np.round(np.asarray(v), 2).tolist()
                                                                       for k, v in d.items()}}) + "\n")

    @classmethod
    def for_saved(cls, run_dir, meta, cfg, backbone=None) -> "Detection":
        records = {r["path"]: r for part in rf.read_splits(run_dir).values() for r in part.get("records", [])}
        return cls(records, list(meta["labels"]), cfg.score_threshold)

    def with_data(self, data) -> "Detection":
        return Detection(data.records_, self.classes, self.threshold)

    def export(self, pred, fmt, out_dir, meta, check_inputs):
        """ONNX: the whole detector (resize, NMS and box rescaling included) on one image of any size."""
        if fmt == "safetensors":
            return None
        if fmt != "onnx":
            raise ConfigError(f"--format {fmt} is not available for detection runs", "onnx or safetensors",
                              "Use --format onnx (the whole detector, NMS included)")
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "output": OUTPUT, "layout": "one image, float32 3×H×W in [0, 1], RGB, any size",
                "score_threshold": self.threshold}
        rf.write_new(out_dir / "contract.json", json.dumps(meta, indent=2), "--out")
        path = out_dir / "model.onnx"
        return {"path": str(path), "format": fmt, "parity": export_onnx(pred.model, path, meta, check_inputs())}

    def contract(self, data_config) -> dict[str, Any]:
        """What an exported detector's consumer does to an image: scale to [0, 1]; the model resizes and normalises."""
        dc = data_config
        return {"input_size": dc["input_size"], "mean": dc["mean"], "std": dc["std"], "min_size": dc["min_size"],
                "max_size": dc["max_size"], "layout": "one image, float32 3×H×W in [0, 1], RGB, any size"}

    def example_input(self, data_config, n: int = 2):
        return None  # the stage check in Detector gives the clear error

    @classmethod
    def item_values(cls, run_dir, labels):
        rows = read_detections(run_dir)
        return jackknife([r["det"] for r in rows], [r["gt"] for r in rows], cls.compare_metrics)

    @classmethod
    def summary(cls, m):
        c = m["counts"]
        return (f"mAP@[.5:.95] {m['map']:.3f}, mAP@.5 {m['map_50']:.3f}, mAP@.75 {m['map_75']:.3f}, AR@100 "
                f"{m['mar_100']:.3f}; at score ≥ {m['score_threshold']}: {c['tp']} true positives, {c['fp']} false "
                f"positives, {c['missed']} missed of {m['objects']} objects ({m['n']} images)")

    def decode(self, outputs, labels, topk=3):
        return [{"boxes": [{"label": labels[int(lab) - 1], "score": round(float(s), 4),
                            "box": [round(float(v), 1) for v in box]}
                           for box, s, lab in zip(d["boxes"], d["scores"], d["labels"]) if s >= self.threshold]}
                for d in outputs]

    def collate(self, backbone, xs):
        return DetectionDataset.collate_fn([(x, i) for i, x in enumerate(xs)])[0]

    def per_item(self, outputs) -> list:
        return [{k: v.cpu().numpy() for k, v in d.items()} for d in outputs]

    def rows(self, predictions):
        """One row per box (label, score, x1 y1 x2 y2 in original pixels); an input without boxes gets an empty row."""
        out = []
        for p in predictions:
            boxes = p["boxes"] or [{"label": "", "score": None, "box": [None] * 4}]
            out += [{"input": p["input"], "label": b["label"], "score": b["score"],
                     **dict(zip(("x1", "y1", "x2", "y2"), b["box"]))} for b in boxes]
        return out

    def draw(self, predictions, out_dir):
        return save_drawn(predictions, Path(out_dir))

    def app_output(self, gr, labels):
        return gr.AnnotatedImage(label="boxes", height=360)

    def app_value(self, prediction, given):
        return (given, [(tuple(int(round(v)) for v in b["box"]), f"{b['label']} {b['score']:.2f}")
                        for b in prediction["boxes"]])

    def report_sections(self, run_dir, m, meta, modality):
        return sections(run_dir, m, read_detections(run_dir), meta["labels"])


def read_detections(run_dir) -> list[dict]:
    path = Path(run_dir) / DETECTIONS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []

