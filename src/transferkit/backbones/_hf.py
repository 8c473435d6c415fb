"""Hugging Face text encoders: ``hf:<model id or folder>`` and ``packaged:minilm``."""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

import torch

from .._scoped import environ
from ..errors import BackboneError
from ._base import Backbone
from ._registry import register_kind, register_packaged_loader, register_source
from ._speech import waveform_from_hf
from ._whisper import whisper_from_hf

DEFAULT_MAX_LENGTH = 128  # tokens kept per text where neither the user nor the model says (transformers' examples)


class HFBackbone(Backbone):
    """A transformer encoder + pooling (mean or CLS, optional L2 normalisation) → sentence features."""

    modality = "text"
    cpu_bf16 = True

    def __init__(self, model, tokenizer, spec: dict, max_length: int = DEFAULT_MAX_LENGTH, name: str = ""):
        super().__init__(model, spec, {"max_length": max_length}, None, name)
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def num_features(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, batch: dict) -> torch.Tensor:
        out = self.model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
        hidden = out.last_hidden_state
        if self.spec.get("pooling", "mean") == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.spec.get("normalize"):
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def forward_features(self, batch: dict) -> torch.Tensor:
        """Unpooled token states (B, tokens, hidden)."""
        keys = ("input_ids", "attention_mask", "token_type_ids")
        return self.model(**{k: v for k, v in batch.items() if k in keys}).last_hidden_state

    def feature_info(self) -> list[dict]:
        return [{"num_chs": self.num_features, "reduction": 1, "module": "model"}]

    def stages(self) -> list[list[str]]:
        """Embeddings, then one stage per transformer layer, then anything after (pooler)."""
        groups: dict[int, list[str]] = {}
        for n, _ in self.named_parameters():
            m = re.search(r"\.layers?\.(\d+)\.", n)
            key = -1 if "embeddings" in n else int(m.group(1)) if m else 10**6
            groups.setdefault(key, []).append(n)
        return [groups[k] for k in sorted(groups)]

    def fresh(self) -> "HFBackbone":
        from transformers import AutoModel  # optional (text/audio extra), heavy

        model = AutoModel.from_config(self.model.config)
        return HFBackbone(model, self.tokenizer, self.spec, self.max_length, f"random:{self.name}")

    def save_extra(self, run_dir) -> None:
        folder = Path(run_dir) / "backbone"
        folder.mkdir(exist_ok=True)
        self.model.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{path} is not readable JSON ({type(exc).__name__}: {str(exc)[:120]})",
                            "the model folder's sentence-transformers files as saved by save_pretrained()",
                            "Restore the file from the model's source, or delete it") from None


def _sentence_transformers_config(folder: Path) -> tuple[str, bool, int | None]:
    """Pooling, normalisation and tokens kept per text as the model's own sentence-transformers files define them;
    a plain encoder (no modules.json) is mean-pooled, as sentence-transformers and SetFit pool one."""
    declared = folder / "sentence_bert_config.json"
    max_seq = _json(declared).get("max_seq_length") if declared.is_file() else None
    if max_seq is not None and (isinstance(max_seq, bool) or not isinstance(max_seq, int) or max_seq < 1):
        raise BackboneError(f"{declared} declares max_seq_length={max_seq!r}", "a token count ≥ 1",
                            "Correct the file, or set --max-length")
    modules = folder / "modules.json"
    mods = _json(modules) if modules.is_file() else []
    normalize = any(m.get("type", "").endswith("Normalize") for m in mods)
    pooling = "mean"
    for m in mods:
        if m.get("type", "").endswith("Pooling"):
            cfg = folder / m.get("path", "") / "config.json"
            if cfg.is_file() and _json(cfg).get("pooling_mode_cls_token"):
                pooling = "cls"
    return pooling, normalize, max_seq


def _hub_sentence_files(name: str) -> Path | None:
    """A folder with the hub model's sentence-transformers files (pooling, normalisation, length), where it has
    them: from the local cache first, then the hub; None where it has none or the hub cannot be reached."""
    try:
        from huggingface_hub import snapshot_download  # optional (with transformers)

        folder = Path(snapshot_download(name, allow_patterns=["modules.json", "sentence_bert_config.json",
                                                               "*Pooling/config.json"]))
    except Exception:  # noqa: BLE001 - a model without these files, or no hub: the plain encoder's defaults
        return None
    return folder if (folder / "modules.json").is_file() else None


def load_hf(name: str, max_length: int | None = None, **_) -> Backbone:
    """``max_length`` None: the model's declared ``max_seq_length`` (sentence-transformers), else 128 tokens."""
    try:
        from transformers import AutoModel, AutoTokenizer  # optional (text/audio extra), heavy
    except ImportError:
        raise BackboneError("Text backbones need the transformers package", None,
                            "pip install 'transferkit[text]'") from None
    local = Path(name).is_dir()
    try:
        from transformers import AutoConfig  # optional (text/audio extra), heavy

        config = AutoConfig.from_pretrained(name)
        if config.model_type == "whisper":  # the encoder of a speech recogniser

            return whisper_from_hf(AutoModel.from_pretrained(name), name)
        model = AutoModel.from_pretrained(name)
        if model.main_input_name == "input_values":  # a waveform encoder: wav2vec2, HuBERT, WavLM …

            return waveform_from_hf(model, name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not local
        raise BackboneError(
            f"Could not load hf:{name} ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            + ("; the hub is unreachable (offline?) or the model does not exist" if offline and not local else ""),
            "a Hugging Face model id (with internet) or a local model folder",
            "Work offline with packaged:minilm (text), packaged:whisper_base (audio) or a local folder saved "
            "with save_pretrained()",
        ) from None
    folder = Path(name) if local else _hub_sentence_files(name)
    pooling, normalize, declared = _sentence_transformers_config(folder) if folder else ("mean", False, None)
    spec = {"kind": "hf", "arch": model.config.model_type, "pooling": pooling, "normalize": normalize}
    return HFBackbone(model, tokenizer, spec, max_length or declared or DEFAULT_MAX_LENGTH)


register_source("hf", "a Hugging Face encoder by model id (needs internet) or local folder: text encoders; "
                      "Whisper, wav2vec2, HuBERT, WavLM for audio")(load_hf)


@register_packaged_loader("sentence-transformers")
def load_packaged_text(entry, max_length: int | None = None, **_) -> HFBackbone:
    folder = importlib.import_module(entry.module).get_model_path()
    with environ(HF_HUB_OFFLINE="1"):  # the weights are in the package: no hub look-up during this load
        return load_hf(str(folder), max_length=max_length)


@register_kind("hf")
def hf_from_run(spec: dict, pretrained_cfg: dict, run_dir: Path | None) -> HFBackbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # optional (text/audio extra), heavy

    folder = Path(run_dir) / "backbone"
    if not folder.is_dir():
        raise BackboneError(f"Run folder {run_dir} lacks backbone/ (config and tokenizer)", None, "Train the run again")
    model = AutoModel.from_config(AutoConfig.from_pretrained(folder))
    max_length = pretrained_cfg.get("max_length", DEFAULT_MAX_LENGTH)
    return HFBackbone(model, AutoTokenizer.from_pretrained(folder), spec, max_length)
