"""Texts: CSV/TSV/JSONL with a text and a label column; tokenised per batch by the backbone's tokenizer."""

from __future__ import annotations

import html
from pathlib import Path

from ..config import Option
from ..errors import DataError
from ._base import Modality

FEW_SHOT_PER_CLASS = 100  # training texts per class up to which --strategy auto picks contrastive
MAX_REQUEST_CHARS = 100_000  # serve: longer texts are refused (the tokenizer truncates far earlier)


class TextModality(Modality):
    name = "text"
    options = (Option("max_length", int, None, "tokens kept per text (default: the model's declared length, else 128)",
                      low=1, high=1_000_000, wanted="a token count ≥ 1"),)
    # Transformers fine-tune at far smaller learning rates than convolutional image backbones.
    defaults = {"lr": 1e-3, "backbone_lr_mult": 0.05}
    inputs_help = "texts (--text, --file)"
    backbone_inputs = ("text",)
    backbone_fix = "Use packaged:minilm or hf:<model> for text"
    #: all-MiniLM-L6-v2, the packaged text encoder (SMS spam probe 98.8%, 8 texts per class 94.9%)
    default_backbones = ("packaged:minilm",)
    request_help = 'JSON {"text": "..."} with Content-Type application/json'
    request_body = "json"
    inputs_are_files = False

    def detect(self, probe, cfg) -> int:
        return 10 if probe.columns and not probe.has_paths and cfg.text_column in probe.columns else 0

    def data(self, path: Path, cfg, **split):
        return TextData(path, cfg.text_column, cfg.label_column, **split)

    def default_strategy(self, train) -> str:
        """Few texts per class: contrastive pairs beat the frozen probe by 5–13 points of accuracy on SMS spam at
        8–64 per class (bench/setfit_vs_transferkit.py); with many, the probe is close and far cheaper."""
        per_class = len(train) / max(1, len(set(train.labels)))
        return "contrastive" if per_class <= FEW_SHOT_PER_CLASS else "linear-probe"

    def auto_candidates(self, train) -> tuple[str, ...]:
        return (self.default_strategy(train), "finetune")  # then the whole encoder, end to end

    def pipeline(self, backbone, cfg, data=None):
        cfg.max_length = backbone.max_length  # resolved (the model's declared length where none was given): saved
        return None, None, {"max_length": backbone.max_length}

    def dataset(self, backbone, items, transform, cfg=None, fill=False, progress=None):
        return TextDataset(items, backbone.tokenizer, backbone.max_length)

    def baseline_features(self, train, evaluate):
        """TF-IDF of word 1–2-grams (fitted on train)."""
        from sklearn.feature_extraction.text import TfidfVectorizer  # heavy: loaded on first use

        t0 = time.time()
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        x_train = vec.fit_transform(train.inputs)
        return "tfidf", x_train, vec.transform(evaluate.inputs), time.time() - t0

    def feature_key(self, transform, data_config) -> str:
        return f"text|{sorted(data_config.items())!r}"

    def eval_transform(self, meta, backbone):
        return None

    def app_input(self, gr):
        return gr.Textbox(lines=4, label="text")

    def app_payload(self, value, max_bytes: int):
        return {"text": value or ""}

    def decode_request(self, payload, transform) -> str:
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataError("No text in the request", '{"text": "<non-empty string>"}')
        if len(text) > MAX_REQUEST_CHARS:
            raise DataError(f"The text has {len(text):,} characters", f"at most {MAX_REQUEST_CHARS:,} per request",
                            "Send a shorter text (the model reads only its first tokens anyway)")
        return text

    def channels_last(self, cfg) -> bool:
        return False  # token batches are dicts

    def collate(self, backbone, xs: list):
        batch, _ = backbone_collate(backbone, xs)
        return batch

    def example_input(self, data_config, n=2):
        return None  # token batches are dicts: exported as weights + tokenizer

    def contract(self, data_config):
        return {"max_length": data_config.get("max_length"), "input": "texts, tokenised by backbone/"}

    def preview(self, item: str) -> str:
        return f"<div class=text>{html.escape(item[:300])}</div>"


def backbone_collate(backbone, texts: list[str]):
    ds = TextDataset(Items(list(texts), [0] * len(texts)), backbone.tokenizer, backbone.max_length)
    return ds.collate_fn([ds[i] for i in range(len(ds))])


import time

from ..data import Items
from ..data.text import TextData, TextDataset
from . import register_modality  # noqa: E402

register_modality(TextModality())
