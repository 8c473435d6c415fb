"""The segmentation report (headline numbers, per-class IoU bars, the class confusion matrix, the worst test images
as image | truth | prediction | errors) and the pictures ``predict --out`` / ``--draw`` write."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ... import _runfolder as rf
from ...data import load_rgb
from ...evaluation import kpis, plots
from ._masks import IGNORE

#: class colours (index order; repeats after 20), 255 = ignore in grey
PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
                    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210),
                    (199, 199, 199), (219, 219, 141), (158, 218, 229)], np.uint8)


def colourise(mask: np.ndarray) -> np.ndarray:
    out = PALETTE[mask % len(PALETTE)]
    out[mask == IGNORE] = (60, 60, 60)
    return out


def overlay(image: Image.Image, mask: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image with each pixel tinted by its class colour."""
    base = np.asarray(image.convert("RGB"), np.float32)
    tint = colourise(mask).astype(np.float32)
    return Image.fromarray((base * (1 - alpha) + tint * alpha).astype(np.uint8))


def errors(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Right pixels dark, wrong ones red, ignored ones grey."""
    out = np.full((*truth.shape, 3), 30, np.uint8)
    out[(mask != truth) & (truth != IGNORE)] = (230, 40, 40)
    out[truth == IGNORE] = (120, 120, 120)
    return out


def png_bytes(a: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 82} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _img(a, alt: str, width: int = 220) -> str:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    img = img.resize((width, max(1, round(img.height * width / img.width))), Image.NEAREST)
    data = base64.b64encode(png_bytes(img.convert("RGB"), "JPEG")).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{data}">'


def legend(labels: list[str]) -> str:
    return "<p>" + " ".join(f"<span style='background:rgb{tuple(int(v) for v in PALETTE[i % len(PALETTE)])};"
                            f"padding:0 .5em;margin-right:.3em'>&nbsp;</span>{html.escape(n)}"
                            for i, n in enumerate(labels)) + "</p>"


def sections(m: dict, labels: list[str], worst: list[tuple[str, np.ndarray, np.ndarray, float]]) -> list[str]:
    w = m.get("weakest_class") or {}
    out = [kpis([("mIoU", f"{m['miou']:.3f}"), ("pixel accuracy", f"{m['pixel_accuracy']:.3f}"),
                 ("mean Dice", f"{m['mdice']:.3f}"),
                 ("weakest class", f"{html.escape(str(w.get('name')))} {w['iou']:.3f}" if w.get("iou") is not None else "–")],
                m.get("seconds", 0)),
           f"<p class=note>Model selection: {html.escape(str(m.get('selection', '')))}. mIoU is computed from the "
           f"confusion matrix of all {m['pixels']:,} scored pixels of {m['n']} images (255 = ignore left out).</p>",
           "<h2>Per-class IoU</h2>", plots.img(plots.per_class_bars({k: v["iou"] for k, v in m["per_class"].items()},
                                                                     "IoU"), "per-class IoU"),
           _class_table(m), "<h2>Confusion matrix (pixels)</h2>",
           plots.img(plots.confusion_heatmap(m["confusion_matrix"], labels), "confusion matrix")]
    if worst:
        cells = []
        for path, truth, pred, miou in worst:
            try:
                image = load_rgb(path)
            except Exception:  # noqa: BLE001 - moved or deleted since the run: the masks are still shown
                image = Image.fromarray(np.zeros((*truth.shape, 3), np.uint8))
            cells.append(f"<div class=row><small>{html.escape(Path(path).name[:60])}: mIoU {miou:.3f}</small><br>"
                         f"{_img(image, 'image')}{_img(overlay(image, truth), 'truth')}"
                         f"{_img(overlay(image, pred), 'prediction')}{_img(errors(pred, truth), 'errors')}</div>")
        out += [f"<h2>Worst {html.escape(str(m.get('split', 'test')))} images</h2><p>image · truth · prediction · "
                "errors (red: wrong, grey: ignored), lowest mIoU first</p>",
                legend(labels), "".join(cells)]
    return out


def _class_table(m: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_f(v['iou'])}</td><td>{_f(v['dice'])}</td>"
                   f"<td>{100 * v['share']:.1f}%</td></tr>" for k, v in m["per_class"].items())
    return f"<table><tr><th>class</th><th>IoU</th><th>Dice</th><th>share of pixels</th></tr>{rows}</table>"


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def write_masks(predictions: list[dict], out_dir: Path, overlays: bool, labels: list[str]) -> list[Path]:
    """``predict --out``: each input's mask as an index PNG ``<stem>_mask.png`` (and ``<stem>_overlay.jpg`` with
    ``overlays``), never over an input."""
    out_dir = rf.output_dir(out_dir, "--out")
    taken = {Path(p["input"]).resolve() for p in predictions}
    written: list[Path] = []
    for p in predictions:
        mask = mask_of(p)
        path = rf.free_path(out_dir, f"{Path(p['input']).stem}_mask.png", taken)
        path.write_bytes(base64.b64decode(p["mask_png"]))
        written.append(path)
        if overlays:
            ov = rf.free_path(out_dir, f"{Path(p['input']).stem}_overlay.jpg", taken)
            ov.write_bytes(png_bytes(overlay(load_rgb(p["input"]), mask), "JPEG"))
            written.append(ov)
    return written


def mask_of(prediction: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["mask_png"]))))
