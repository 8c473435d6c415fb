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
        gr.Markdown(f"## {html.escape(name)}\n{html.escape(task.name)} on {html.escape(modality.name)} inputs · "
                    f"{len(predictor.labels)} {html.escape(task.labels_are)} · JSON API at `/predict`, docs at `/docs`")
        with gr.Row():
            given = modality.app_input(gr)
            shown = task.app_output(gr, predictor.labels)
        given.elem_id, shown.elem_id = "tk-input", "tk-output"  # what a browser test (or a stylesheet) finds
        button = gr.Button("Predict", variant="primary")
        button.click(run_one, given, shown, api_name="predict")
        examples = _examples(run, modality)
        if examples:
            gr.Examples(examples, given, label="examples from the run's evaluation split")
    return demo


def _examples(run: Path, modality, n: int = 4) -> list:
    """The first few inputs of the run's evaluation split that still exist."""
    try:
        _, inputs, _ = rf.evaluation_split(Path(run))
    except Exception:  # noqa: BLE001 - a run without its split: the page works without examples
        return []
    if modality.inputs_are_files:
        inputs = [i for i in inputs if Path(i).is_file()]
    return [[i] for i in inputs[:n]]
