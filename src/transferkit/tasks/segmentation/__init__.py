"""Semantic segmentation: a class for every pixel. Decoders from segmentation-models-pytorch (U-Net by default,
FPN, DeepLabV3+) on the backbone's stages, masks moved with the pixels by ``transforms.v2``, mIoU from the
accumulated confusion matrix."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ... import _runfolder as rf
from ...data import held_inputs, split_settings
from ...errors import ConfigError
from ...features import make_loader
from .._base import Task, register_task
from ._formats import mask_layout
from ._data import SegmentationData, SegmentationDataset, SegPresize, SegTransform, seg_ops
from ._export import OUTPUT, export_onnx
from ._masks import IGNORE, load_mask
from ._metrics import confusion, jackknife, scores, segmentation_metrics
from ._model import HEADS, Segmenter
from ._report import mask_of, png_bytes, sections, write_masks

CONFUSIONS = "confusions.npz"
#: output pixels scaled back per band: the memory of one image's upsampling is classes × this × 4 bytes
BAND_PIXELS = 2**20
MASKS = "masks"


def upsampled_mask(logits: torch.Tensor, h: int, w: int) -> dict:
    """One image's mask at its own size (``h`` × ``w``): logits scaled back bilinearly (as ``F.interpolate`` with
    ``align_corners=False``), softmax, argmax — in bands of rows, so a 64-Mpx photo never holds classes × 64 M floats
    at once. Returns the uint8 mask and the mean top-class probability."""
    logits = logits[None].float()
    mask = torch.empty((h, w), dtype=torch.uint8)
    xs = (2 * torch.arange(w, dtype=torch.float32, device=logits.device) + 1) / w - 1
    band, total = max(1, BAND_PIXELS // max(w, 1)), 0.0
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        ys = (2 * torch.arange(r0, r1, dtype=torch.float32, device=logits.device) + 1) / h - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]  # (1, rows, w, (x, y))
        p = F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)[0].softmax(0)
        conf, m = p.max(0)
        mask[r0:r1] = m.to(torch.uint8).cpu()
        total += float(conf.sum())
    return {"mask": mask.numpy(), "confidence": total / max(h * w, 1)}


def resolve_head(head: str | None) -> str:
    """``--head``: unet (default; ``linear``, the run's default head, means U-Net here), fpn or deeplabv3plus."""
    head = (head or "unet").lower().replace("-", "").replace("_", "")
    head = {"linear": "unet", "deeplab": "deeplabv3plus", "deeplabv3+": "deeplabv3plus"}.get(head, head)
    if head not in HEADS:
        raise ConfigError(f"Unknown segmentation --head {head!r}", f"one of {', '.join(HEADS)}",
                          "Leave --head out for U-Net")
    return head


@register_task
class Segmentation(Task):
    name = "segment"
    description = "a class for every pixel (images + masks, Pascal VOC, COCO, a CSV of image,mask pairs)"
    compare_metrics = ("miou", "pixel_accuracy")
    modalities = ("image",)
    loop_trained_head = True
    reads_inputs = True  # images with masks: read, augmented and batched by the task
    #: AdamW, decoder 1e-3 and backbone at a tenth, batch 8, about 240 steps (a plain smp U-Net recipe on 210
    #: aerial crops: docs/segmentation.md)
    defaults = {"lr": 1e-3, "backbone_lr_mult": 0.1, "batch_size": 8, "steps": 240}
    default_size = 320
    title = "segmentation"
    unsupported = "its decoder is trained by the loop, never fitted on cached features"
    unsupported_fix = "Use --strategy frozen for a frozen backbone (the decoder trains)"
    output_help = "logits (N, classes, H, W); argmax over classes is the mask"
    prediction_columns = ("input", "miou", "pixel_accuracy", "confidence", "mask")

    def __init__(self, records: dict | None = None, spec: dict | None = None, classes: list[str] | None = None):
        self.records = records or {}
        self.spec = spec
        self.classes = classes or []
        self._scored: tuple = (None, [])  # (which outputs, their confusion matrices): this run's, never shared

    # -- data ------------------------------------------------------------------------------------------------
    @classmethod
    def recognises(cls, path: Path) -> str | None:
        return mask_layout(path)

    @classmethod
    def read_data(cls, cfg, **split) -> SegmentationData:
        given = [f"--{k.replace('_', '-')}" for k in ("shots", "label_by") if getattr(cfg, k, None)]
        if given:
            raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to segmentation",
                              "the split by image (--val-fraction, --test-fraction, --split-seed, --group-by) or "
                              "the data's own", f"Leave {', '.join(given)} out")
        return SegmentationData(cfg.data, **{**split_settings(cfg), **split})

    @classmethod
    def saved_data(cls, run_dir: Path, modality) -> SegmentationData:
        saved = rf.read_splits(run_dir)
        spec = next(v["mask_spec"] for v in saved.values() if "mask_spec" in v)
        labels_file = Path(run_dir) / rf.LABELS
        labels = json.loads(labels_file.read_text()) if labels_file.is_file() else None
        return SegmentationData(run_dir, saved={"records": {k: v.get("records", []) for k, v in saved.items()},
                                                "spec": spec, "classes": labels or
                                                [str(i) for i in range(spec["num_classes"])]})

    @classmethod
    def for_run(cls, cfg, data, backbone=None, data_config=None) -> "Segmentation":
        return cls(data.records_, data.spec_, list(data.classes_))

    @classmethod
    def for_saved(cls, run_dir, meta, cfg, backbone=None) -> "Segmentation":
        saved = rf.read_splits(run_dir)
        records = {r["path"]: r for part in saved.values() for r in part.get("records", [])}
        spec = next((v["mask_spec"] for v in saved.values() if "mask_spec" in v), None)
        return cls(records, spec, list(meta["labels"]))

    def with_data(self, data) -> "Segmentation":
        data.setup()
        if data.spec_["num_classes"] > len(self.classes):
            raise ConfigError(f"{data.describe()} has {data.spec_['num_classes']} classes; the run knows "
                              f"{len(self.classes)}", "masks with the run's classes", "Score data of the same classes")
        return Segmentation(data.records_, {**data.spec_, "num_classes": len(self.classes)}, self.classes)

    # -- inputs --------------------------------------------------------------------------------------------
    @classmethod
    def pipeline(cls, backbone, cfg, data=None):
        size = cfg.image_size or cls.default_size
        presize = SegPresize(size)
        dc = {"input_size": [3, size, size], "head": resolve_head(cfg.head), "resize": "whole image to "
              f"{size}×{size}; logits scaled back to the image's size",
              "mean": list(backbone.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
              "std": list(backbone.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))}
        return SegTransform(presize, seg_ops(cfg.augment, size), train=True), SegTransform(presize), dc

    def eval_transform(self, meta, backbone=None) -> SegTransform:
        return SegTransform(SegPresize(meta["data_config"]["input_size"][-1]))

    def dataset(self, backbone, items, transform, cfg=None, fill=False, progress=None):
        held = held_inputs(cfg, items.inputs, transform.presize, fill, progress)
        return SegmentationDataset(items, self.records, self.spec, transform, held)

    def collate(self, backbone, xs):
        return {"images": torch.stack([x for x, _ in xs]), "sizes": torch.stack([s for _, s in xs])}

    def contract(self, data_config) -> dict[str, Any]:
        return {"input_size": data_config["input_size"], "layout": "uint8 (or float 0–255) RGB N×3×H×W, any H and W; "
                "the model normalises; resize to input_size for the trained scale", "head": data_config["head"]}

    def example_input(self, data_config, n: int = 2):
        return torch.randint(0, 256, (n, *data_config["input_size"]), dtype=torch.uint8)

    # -- model and loop ------------------------------------------------------------------------------------
    def build_model(self, backbone, meta) -> Segmenter:
        head = (meta.get("data_config") or {}).get("head") or resolve_head(meta.get("head"))
        return Segmenter(backbone, len(meta["labels"]), head)

    def loss(self, outputs, targets) -> torch.Tensor:
        from segmentation_models_pytorch.losses import DiceLoss  # heavy: loaded on first use

        ce = F.cross_entropy(outputs.float(), targets, ignore_index=IGNORE)
        return ce + DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE)(outputs.float(), targets)

    @torch.inference_mode()
    def evaluate(self, model, loader, to_device, gather=None) -> dict[str, float]:
        model.eval()
        rows, losses = [], []
        n = len(self.classes)
        for x, y in loader:
            x, y = to_device(x, y)
            logits = model(x)
            losses.append(F.cross_entropy(logits.float(), y, ignore_index=IGNORE, reduction="none")
                          .flatten(1).mean(1).cpu())
            pred = logits.argmax(1).cpu().numpy()
            rows += [torch.from_numpy(confusion(p, t, n).reshape(-1)) for p, t in zip(pred, y.cpu().numpy())]
        if not rows:
            return {}
        cms, loss = torch.stack(rows), torch.cat(losses)
        if gather is not None:
            cms, loss = gather(cms), gather(loss[:, None])[:, 0]
        s = scores(cms.sum(0).reshape(n, n).numpy())
        return {"val_loss": float(loss.mean()), "val_miou": s["miou"], "val_pixel_accuracy": s["pixel_accuracy"]}

    @classmethod
    def selection_score(cls, row):
        return (row.get("val_miou", 0.0), -row.get("val_loss", 0.0))

    @torch.inference_mode()
    def infer(self, model, dataset, batch_size: int, device, progress=None, **_) -> list[dict]:
        """Per image: its mask (uint8, the image's own size: logits scaled back bilinearly, then argmax) and the mean
        top-class probability."""
        model.eval()
        out, k = [], 0
        for x, _ in make_loader(dataset, min(batch_size, 8), 0):
            sizes = [dataset.orig_size(k + j) for j in range(len(x))]
            out += self.per_item({"logits": model(x.to(device)), "sizes": torch.tensor(sizes)})
            k += len(x)
            if progress:
                progress(len(x))
        return out

    def run_batch(self, model, batch):
        return {"logits": model(batch["images"]), "sizes": batch["sizes"]}

    def per_item(self, outputs) -> list[dict]:
        return [upsampled_mask(logits, h, w) for logits, (h, w) in zip(outputs["logits"], outputs["sizes"].tolist())]

    # -- scoring -------------------------------------------------------------------------------------------
    def _confusions(self, outputs, items) -> list[np.ndarray]:
        """Each image's confusion matrix against its mask, read once per set of outputs (metrics, rows and the saved
        file of one scoring all use them)."""
        key = (id(outputs), tuple(items.inputs))
        if self._scored[0] != key:
            n = len(self.classes)
            self._scored = (key, [confusion(o["mask"], load_mask(self.records[p], {**self.spec, "num_classes": n}), n)
                                  for p, o in zip(items.inputs, outputs)])
        return self._scored[1]

    def metrics(self, outputs, items, labels) -> dict[str, Any]:
        return segmentation_metrics(self._confusions(outputs, items), labels)

    def prediction_rows(self, outputs, items, labels) -> list[dict]:
        rows = []
        for i, (p, o, cm) in enumerate(zip(items.inputs, outputs, self._confusions(outputs, items))):
            s = scores(cm)
            rows.append({"input": p, "miou": f"{s['miou']:.4f}", "pixel_accuracy": f"{s['pixel_accuracy']:.4f}",
                         "confidence": f"{o['confidence']:.4f}", "mask": f"{MASKS}/{i:05d}_{Path(p).stem}.png"})
        return rows

    def save_outputs(self, run_dir, outputs, items) -> None:
        """masks/: each evaluation image's predicted mask (index PNG); confusions.npz: its confusion matrix (the
        report's worst images, compare's intervals)."""
        (run_dir / MASKS).mkdir(exist_ok=True)
        for i, (p, o) in enumerate(zip(items.inputs, outputs)):
            (run_dir / MASKS / f"{i:05d}_{Path(p).stem}.png").write_bytes(png_bytes(o["mask"]))
        np.savez_compressed(run_dir / CONFUSIONS, inputs=np.array(items.inputs),
                            confusions=np.stack(self._confusions(outputs, items)))

    @classmethod
    def item_values(cls, run_dir, labels):
        path = Path(run_dir) / CONFUSIONS
        return jackknife(list(np.load(path)["confusions"]), cls.compare_metrics) if path.is_file() else {}

    @classmethod
    def summary(cls, m):
        w = m["weakest_class"]
        weakest = f"; weakest class {w['name']} {w['iou']:.3f}" if w.get("iou") is not None else ""
        return (f"mIoU {m['miou']:.3f}, pixel accuracy {m['pixel_accuracy']:.3f}, mean Dice {m['mdice']:.3f}"
                f"{weakest} ({m['n']} images)")

    # -- using a finished run ------------------------------------------------------------------------------
    def decode(self, outputs, labels, topk=3):
        """Per image: the share of pixels of each class, the mean confidence, and the mask as a base64 index PNG."""
        out = []
        for o in outputs:
            counts = np.bincount(o["mask"].ravel(), minlength=len(labels))[:len(labels)]
            out.append({"fractions": {lab: round(float(c / max(counts.sum(), 1)), 4) for lab, c in zip(labels, counts)},
                        "confidence": round(o["confidence"], 4), "size": list(o["mask"].shape),
                        "mask_png": base64.b64encode(png_bytes(o["mask"])).decode()})
        return out

    def rows(self, predictions):
        return [{"input": p["input"], "confidence": p["confidence"], **p["fractions"]} for p in predictions]

    def app_output(self, gr, labels):
        return gr.AnnotatedImage(label="mask", height=360)

    def app_value(self, prediction, given):
        """The photo with each present class's pixels as a layer, named with its share of the image."""
        mask = mask_of(prediction)
        present = [(i, lab) for i, lab in enumerate(prediction["fractions"]) if prediction["fractions"][lab] > 0]
        if len(present) > 1:  # a background layer would hide the photo: it shows through instead
            present = [(i, lab) for i, lab in present if lab.lower() != "background"]
        return (given, [((mask == i).astype(float), f"{lab} {prediction['fractions'][lab]:.0%}") for i, lab in present])

    def draw(self, predictions, out_dir):
        return write_masks(predictions, Path(out_dir), True, self.classes)

    def write(self, predictions, out_dir, overlays: bool = False):
        return write_masks(predictions, Path(out_dir), overlays, self.classes)

    def export(self, pred, fmt, out_dir, meta, check_inputs):
        """ONNX: the whole model on images of any size (resized to the training size inside, logits scaled back)."""
        if fmt == "safetensors":
            return None
        if fmt != "onnx":
            raise ConfigError(f"--format {fmt} is not available for segmentation runs", "onnx or safetensors",
                              "Use --format onnx (any image size)")
        out_dir.mkdir(parents=True, exist_ok=True)
        size = pred.meta["data_config"]["input_size"][-1]
        meta = {**meta, "output": OUTPUT, "layout": "float32 RGB N×3×H×W with values 0–255, any H and W"}
        rf.write_new(out_dir / "contract.json", json.dumps(meta, indent=2), "--out")
        path = out_dir / "model.onnx"
        return {"path": str(path), "format": fmt, "parity": export_onnx(pred.model, size, path, meta, check_inputs())}

    def report_sections(self, run_dir, m, meta, modality):
        run_dir = Path(run_dir)
        task = self if self.spec else self.for_saved(run_dir, meta, None)  # the report builds a bare task object
        worst = []
        path = run_dir / CONFUSIONS
        if path.is_file():
            saved = np.load(path)
            order = sorted(range(len(saved["inputs"])), key=lambda i: scores(saved["confusions"][i])["miou"])[:6]
            n = len(meta["labels"])
            for i in order:
                inp = str(saved["inputs"][i])
                rec = task.records.get(inp)
                pred_path = run_dir / MASKS / f"{i:05d}_{Path(inp).stem}.png"
                if rec is None or not pred_path.is_file():
                    continue
                truth = load_mask(rec, {**task.spec, "num_classes": n})
                pred = mask_of({"mask_png": base64.b64encode(pred_path.read_bytes())})
                worst.append((inp, truth, pred, scores(saved["confusions"][i])["miou"]))
        return sections(m, meta["labels"], worst)
