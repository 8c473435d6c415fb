"""The demo page of a run: a Gradio interface made by the run's modality (the input: photo, text, audio clip or
microphone) and task (the output: label bars, drawn boxes, a mask with per-class areas, a transcript), with examples
from the run's evaluation split. It is mounted by ``serve`` beside the JSON API and calls the same decoding, safety
checks, loaded model and batching as ``/predict``."""

from __future__ import annotations

import html
from pathlib import Path

from . import _runfolder as rf
from .errors import TransferkitError


def build_demo(predictor, run: Path, predict):
    """The ``gr.Blocks`` page; ``predict(value)`` (async) returns one decoded prediction for the page's input."""
    try:
        import gradio as gr  # optional (app extra)
    except ImportError:
        raise TransferkitError("The demo page needs gradio", None, "pip install 'transferkit[app]'") from None

    task, modality = predictor.task, predictor.modality

    async def run_one(value):
        try:
            return task.app_value(await predict(value), value)
        except TransferkitError as exc:  # the reason, shown on the page (Gradio escapes it)
            raise gr.Error(str(exc)) from None

    name = Path(run).name
    with gr.Blocks(title=f"transferkit · {name}", analytics_enabled=False) as demo:
        # The run's name is the user's: shown as text (escaped HTML, never Markdown, whose links would be live).
        gr.HTML(f"<h2>{html.escape(name)}</h2><p>{html.escape(task.name)} on {html.escape(modality.name)} inputs · "
                f"{len(predictor.labels)} {html.escape(task.labels_are)} · JSON API at <code>/predict</code>, docs at "
                "<code>/docs</code></p>")
        with gr.Row():
            given = modality.app_input(gr)
            shown = task.app_output(gr, predictor.labels)
        if modality.inputs_are_files:
            given.preprocess = _uploaded_path  # the file as sent: decoded by the run's own checked decoder alone
        given.elem_id, shown.elem_id = "tk-input", "tk-output"  # what a browser test (or a stylesheet) finds
        button = gr.Button("Predict", variant="primary")
        button.click(run_one, given, shown, api_name="predict")
        examples = example_inputs(run, modality)
        if examples:
            gr.Examples([[e] for e in examples], given, label="examples from the run's evaluation split")
    return demo


def _uploaded_path(payload):
    """The page's file input as its path, not decoded: Gradio's own decoding (its format conversions, with no pixel
    limit) never runs, so the page and ``/predict`` read the same bytes the same way."""
    return None if payload is None else str(payload.path)


def example_inputs(run: Path, modality, n: int = 6) -> list[str]:
    """Up to ``n`` inputs of the run's evaluation split that still exist: one per label first (a sorted split's first
    items are often all of one class), then the next ones."""
    try:
        _, inputs, labels = rf.evaluation_split(Path(run))
    except Exception:  # noqa: BLE001 - a run without its split: the page works without examples
        return []
    pairs = [(i, lab) for i, lab in zip(inputs, labels)
             if not modality.inputs_are_files or Path(i).is_file()]
    chosen, seen = [], set()
    for i, lab in pairs:
        key = lab if isinstance(lab, (int, str)) else repr(lab)
        if key not in seen and len(chosen) < n:
            seen.add(key)
            chosen.append(i)
    chosen += [i for i, _ in pairs if i not in chosen][: n - len(chosen)]
    return chosen
