"""The contract every modality meets: the one place that knows a kind of input."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data import Items, LabelledData
from ..errors import DataError


class Modality:
    """A kind of input (images, texts, audio clips): how it is read, checked, preprocessed and shown.

    A modality is registered with :func:`register_modality`; nothing outside its module branches on
    its name. Methods take the run's ``RunConfig`` (``cfg``) where settings matter.
    """

    name = ""
    #: settings this modality reads (``config.Option``); declared when it is registered
    options: tuple = ()
    #: the backbone a run on this kind of data gets without ``--backbone``: the first of these that is installed
    default_backbones: tuple[str, ...] = ()
    #: defaults filled in when the user gave none (learning rates differ a lot between modalities)
    defaults: dict[str, Any] = {}
    #: what a user passes to predict, for help and error texts
    inputs_help = ""
    #: backbone input kinds this modality can feed (``Backbone.modality``)
    backbone_inputs: tuple[str, ...] = ()
    #: inputs are files (predict's arguments are paths; a moved data folder can be detected)
    inputs_are_files = True
    #: how ``serve`` receives one input: ``file`` (multipart field 'file') or ``json`` (a JSON object)
    request_body = "file"
    #: what to send, for serve's error texts
    request_help = ""

    # -- data --------------------------------------------------------------------------------
    def detect(self, probe, cfg) -> int:
        """How sure (0 = not at all) that the probed data (``Probe``: file suffixes, table columns) is this modality's."""
        return 0

    def data(self, path: Path, cfg, **split) -> LabelledData:
        """The labelled dataset at ``path`` (``split``: val_fraction, test_fraction, seed, shots …)."""
        raise NotImplementedError

    # -- model inputs ----------------------------------------------------------------------------
    def check_backbone(self, backbone, spec: str) -> None:
        if backbone.modality not in self.backbone_inputs:
            raise DataError(f"Backbone {spec} takes {backbone.modality} inputs; this is {self.name} data",
                            f"a backbone for {self.name} data ({', '.join(self.backbone_inputs)} inputs)",
                            self.backbone_fix)

    backbone_fix = "Run `transferkit models` to list backbones"

    def pipeline(self, backbone, cfg, data=None) -> tuple[Any, Any, dict[str, Any]]:
        """(train transform, eval transform, data config) from the backbone's pretrained config."""
        raise NotImplementedError

    def dataset(self, backbone, items: Items, transform, cfg=None, fill: bool = False, progress=None):
        """A torch Dataset of (input tensor(s), label); ``fill`` holds decoded inputs in memory now."""
        raise NotImplementedError

    def default_strategy(self, train) -> str:
        """The strategy ``--strategy auto`` (the default) picks for these training items."""
        return "linear-probe"

    def auto_candidates(self, train) -> tuple[str, ...]:
        """``--strategy auto``'s candidates for classifying these training items, cheapest first: the default, then
        the fine-tuning most likely to gain over it."""
        return (self.default_strategy(train), "lp-ft")

    def channels_last(self, cfg) -> bool:
        """Whether 4-d batches run channels-last (as ``--channels-last`` says; other batches are left as they are)."""
        return bool(cfg is None or cfg.channels_last)

    def feature_key(self, transform, data_config: dict[str, Any]) -> str:
        """Everything about preprocessing that changes the features (part of the feature-cache key)."""
        return f"{self.name}|{transform!r}|{sorted(data_config.items())!r}"

    def baseline_features(self, train: Items, evaluate: Items) -> tuple[str, Any, Any, float] | None:
        """The classic no-transfer features for ``compare`` (name, train X, eval X, seconds), or None."""
        return None

    # -- using a finished run ----------------------------------------------------------------------
    def eval_transform(self, meta: dict[str, Any], backbone) -> Any:
        """The eval transform of a saved run (``model.json``)."""
        raise NotImplementedError

    def expand_inputs(self, inputs: Sequence[str]) -> list[str]:
        """Predict's arguments → the inputs to run (files, folders expanded; texts as given)."""
        return [str(i) for i in inputs]

    def decode_request(self, body: bytes, content_type: str, transform) -> Any:
        """One served request → one model input (as the dataset would give it); DataError if bad."""
        raise NotImplementedError

    def app_input(self, gr):
        """The demo page's input component (``gr`` is the gradio module): a file upload by default."""
        return gr.File(label=self.inputs_help or "input")

    def app_payload(self, value, max_bytes: int):
        """A demo page input (a file path by default) → what :meth:`decode_request` reads, within ``max_bytes``."""
        path = Path(value) if value else None
        if path is None or not path.is_file():
            raise DataError("Nothing to predict", self.inputs_help or "an input")
        if path.stat().st_size > max_bytes:
            raise DataError(f"The file is larger than {max_bytes // 2**20} MiB", "a smaller file")
        return path.read_bytes()

    def collate(self, backbone, xs: list) -> Any:
        """Served inputs (as ``decode_request`` returned them) → one batch."""
        return torch.stack(xs)

    def example_input(self, data_config: dict[str, Any], n: int = 2) -> torch.Tensor:
        """A random batch of the shape the model takes (export)."""
        raise NotImplementedError

    def contract(self, data_config: dict[str, Any]) -> dict[str, Any]:
        """What a consumer of an exported model must do to an input before the network."""
        return {}

    def preview(self, item: str) -> str:
        """An HTML preview of one input for the report (thumbnail, text, spectrogram + player)."""
        return html.escape(str(item)[:300])
