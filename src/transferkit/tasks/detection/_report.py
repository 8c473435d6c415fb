"""The detection report: headline numbers, per-class AP, precision–recall curves, test images with boxes drawn
(true positives, false positives, missed objects) and the most confident false positives."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ... import _runfolder as rf
from ...data import load_rgb
from ...evaluation import kpis, plots
from ._metrics import match

COLOURS = {"tp": (40, 170, 60), "fp": (220, 40, 40), "missed": (255, 160, 0), "ignored": (150, 150, 150)}


def sections(run_dir: Path, m: dict, rows: list[dict], labels: list[str]) -> list[str]:
    c, t = m["counts"], m["score_threshold"]
    out = [kpis([("mAP@[.5:.95]", f"{m['map']:.3f}"), ("mAP@.5", f"{m['map_50']:.3f}"), ("mAP@.75", f"{m['map_75']:.3f}"),
                 ("AR@100", f"{m['mar_100']:.3f}")], m.get("seconds", 0)),
           f"<p class=note>Model selection: {html.escape(str(m.get('selection', '')))}. At score ≥ {t}: "
           f"<b style='color:rgb{COLOURS['tp']}'>{c['tp']} true positives</b>, <b style='color:rgb{COLOURS['fp']}'>"
           f"{c['fp']} false positives</b>, <b style='color:rgb{COLOURS['missed']}'>{c['missed']} missed</b> of "
           f"{m['objects']} objects in {m['n']} images ({m.get('ignored_objects', 0)} ignored: difficult / crowd; "
           f"{m.get('background_images', 0)} images without objects).</p>",
           "<h2>Per-class average precision</h2>", _ap_table(m), plots.img(pr_curves(m.get("pr_curves", {})), "precision-recall")]
    if rows:
        out += ["<h2>Test images</h2><p>Boxes at score ≥ " f"{t}: <b style='color:rgb{COLOURS['tp']}'>true positive</b>, "
                f"<b style='color:rgb{COLOURS['fp']}'>false positive</b>, <b style='color:rgb{COLOURS['missed']}'>missed "
                "object</b> (dashed grey: ignored).</p>", _grid(rows, labels, t, worst_first=True),
                "<h2>Most confident false positives</h2>", _false_positives(rows, labels, t)]
    return out


def _ap_table(m: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['ap']:.3f}</td><td>{v['ap_50']:.3f}</td><td>{v['boxes']}</td></tr>"
                   for k, v in m.get("per_class", {}).items())
    return f"<table><tr><th>class</th><th>AP@[.5:.95]</th><th>AP@.5</th><th>objects</th></tr>{rows}</table>"


def pr_curves(curves: dict[str, list[float]]) -> str | None:
    curves = {k: v for k, v in curves.items() if v and max(v) >= 0}
    if not curves:
        return None
    plt = plots.figure()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    recall = [i / 100 for i in range(101)]
    for name, p in list(curves.items())[:12]:
        pts = [(r, v) for r, v in zip(recall, p) if v >= 0]
        ax.plot([r for r, _ in pts], [v for _, v in pts], label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("precision–recall at IoU 0.5")
    return plots.to_png64(fig)


def draw(path: str, boxes: list[tuple[list[float], str, tuple]], width: int | None = 360, dashed=()) -> str:
    """The image with ``(box, caption, colour)`` drawn, as an embedded JPEG ``<img>`` (boxes in original pixels;
    ``width`` None: the image's own size)."""
    from PIL import Image, ImageDraw  # loaded on first use

    try:
        img = load_rgb(path)
    except Exception:
        return "(image unavailable)"
    scale = (width or img.width) / img.width
    if width:
        img = img.resize((width, max(1, round(img.height * scale))), Image.BILINEAR)
    d = ImageDraw.Draw(img)
    for box, caption, colour in boxes:
        x1, y1, x2, y2 = (v * scale for v in box)
        d.rectangle([x1, y1, x2, y2], outline=colour, width=3 if colour not in dashed else 1)
        if caption:
            d.rectangle([x1, max(0, y1 - 12), x1 + 6 * len(caption) + 4, max(12, y1)], fill=colour)
            d.text((x1 + 2, max(0, y1 - 12)), caption, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def outcome_boxes(row: dict, labels: list[str], threshold: float) -> tuple[list, dict]:
    det, gt = row["det"], row["gt"]
    m = match(det, gt, threshold)
    name = lambda k: labels[int(k) - 1] if 1 <= int(k) <= len(labels) else "?"  # noqa: E731
    boxes = [(gt["boxes"][j], "", COLOURS["ignored"]) for j in range(len(gt["labels"])) if gt["ignore"][j]]
    boxes += [(gt["boxes"][j], f"missed {name(gt['labels'][j])}", COLOURS["missed"]) for j in m["missed"]]
    for kind in ("tp", "fp"):
        boxes += [(det["boxes"][i], f"{name(det['labels'][i])} {det['scores'][i]:.2f}", COLOURS[kind]) for i in m[kind]]
    return boxes, m


def _grid(rows: list[dict], labels: list[str], threshold: float, worst_first: bool, limit: int = 12) -> str:
    drawn = [(r, *outcome_boxes(r, labels, threshold)) for r in rows]
    if worst_first:  # the images with most errors first: what a person wants to look at
        drawn.sort(key=lambda t: -(len(t[2]["fp"]) + len(t[2]["missed"])))
    cells = [f"<div class=cell>{draw(r['input'], boxes, dashed=(COLOURS['ignored'],))}<br><small>"
             f"{html.escape(Path(r['input']).name[:60])}: {len(m['tp'])} TP, {len(m['fp'])} FP, {len(m['missed'])} missed"
             "</small></div>" for r, boxes, m in drawn[:limit]]
    return f"<div class=grid>{''.join(cells)}</div>"


def _false_positives(rows: list[dict], labels: list[str], threshold: float, limit: int = 8) -> str:
    fps = [(r["det"]["scores"][i], r, i) for r in rows for i in match(r["det"], r["gt"], threshold)["fp"]]
    if not fps:
        return "<p class=ok>No false positives at this threshold.</p>"
    fps.sort(key=lambda t: -t[0])
    cells = []
    for score, r, i in fps[:limit]:
        lab = labels[int(r["det"]["labels"][i]) - 1]
        cells.append(f"<div class=cell>{draw(r['input'], [(r['det']['boxes'][i], f'{lab} {score:.2f}', COLOURS['fp'])])}"
                     f"<br><small>{html.escape(Path(r['input']).name[:60])}</small></div>")
    return f"<p>{len(fps)} false positive(s); the most confident first.</p><div class=grid>{''.join(cells)}</div>"


def save_drawn(predictions: list[dict], out_dir: Path) -> list[Path]:
    """``predict --draw``: each input with its boxes drawn, as ``<stem>_boxes.jpg`` in ``out_dir`` — never over an
    input (``-1``, ``-2`` … added where a name is taken by an input or by an earlier one of this call, as for two
    inputs of one stem in different folders)."""
    out_dir = rf.output_dir(out_dir, "--draw")
    taken = {Path(p["input"]).resolve() for p in predictions}
    written: list[Path] = []
    for p in predictions:
        tag = draw(p["input"], [(b["box"], f"{b['label']} {b['score']:.2f}", COLOURS["tp"]) for b in p["boxes"]],
                   width=None)
        if "base64," not in tag:
            continue
        path = rf.free_path(out_dir, f"{Path(p['input']).stem}_boxes.jpg", taken)
        path.write_bytes(base64.b64decode(tag.split("base64,", 1)[1].split('"', 1)[0]))
        written.append(path)
    return written
