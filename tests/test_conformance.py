"""Conformance, in the way of scikit-learn's ``parametrize_with_checks``: every registered plug-in passes the same
contract checks, and every task × modality × strategy combination the registries claim to support is built and
trained one epoch on tiny data — a claim that does not hold fails here, not in a user's run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import transferkit as tk
from transferkit.adaptation import get_method, methods
from transferkit.config import Option, options
from transferkit.modalities import modalities
from transferkit.strategies import strategies
from transferkit.tasks import tasks

from conftest import make_audio_folder, make_boxes, make_folder, make_masks, make_tiny_bert, make_tiny_whisper_asr, TINY

KINDS = {"baseline", "search", "feature-level", "statistics", "adversarial", "output-level", "self-training"}
STRATEGY_NAMES = {"partial:K": "partial:1"}


def _fresh_state_is_not_shared(make) -> None:
    """Two objects from one registry entry share no mutable container: a run's state cannot leak to the next."""
    a, b = make(), make()
    for name, value in vars(a).items():
        if isinstance(value, (list, dict, set)) and value:
            assert getattr(b, name) is not value, f"{type(a).__name__}.{name} is shared between objects"


@pytest.mark.parametrize("name", sorted(strategies()))
def test_strategy_contract(name):
    from transferkit.config import resolve_config

    cls = strategies()[name]
    assert cls.name == name and cls.description
    assert all(isinstance(o, Option) and options()[o.name].owner == f"strategy {name.split(':')[0]}"
               for o in cls.options)
    from transferkit.strategies import get_strategy

    cfg = resolve_config({"strategy": STRATEGY_NAMES.get(name, name)})
    assert isinstance(get_strategy(cfg), cls)
    _fresh_state_is_not_shared(lambda: get_strategy(cfg))


@pytest.mark.parametrize("name", sorted(tasks()))
def test_task_contract(name):
    cls = tasks()[name]
    assert cls.name == name and cls.description
    assert cls.modalities is None or set(cls.modalities) <= set(modalities())
    assert any(cls.supports(s) for s in strategies().values()), f"no strategy can train task {name}"
    _fresh_state_is_not_shared(cls)


@pytest.mark.parametrize("name", sorted(methods()))
def test_adaptation_method_contract(name):
    cls = methods()[name]
    method = get_method(name)
    assert method.name == name and cls.help and cls.kind in KINDS
    assert all(isinstance(o, Option) for o in cls.options)
    assert any(method.compatible(s) for s in strategies().values()), f"--adapt {name} runs with no strategy"
    if cls.while_training:  # a term on the features and logits of a (source, target) batch
        term = method.term(8, 3, 10)
        assert isinstance(term, torch.nn.Module)
        fs, ft, ls, lt = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3), torch.randn(4, 3)
        value = term(fs, ft, ls, lt)
        assert value.ndim == 0 and torch.isfinite(value)
    else:
        with pytest.raises(NotImplementedError):
            method.term(8, 3, 10)
    _fresh_state_is_not_shared(cls)


# -- every supported combination, one epoch on tiny data --------------------------------------------------------------

def _classify_image(tmp: Path):
    return make_folder(tmp / "d", classes=2, per_class=6), dict(backbone=TINY, image_size=32)


def _classify_audio(tmp: Path):
    pytest.importorskip("soundfile")
    return make_audio_folder(tmp / "d", classes=2, per_class=6), dict(backbone=TINY, image_size=32)


def _classify_text(tmp: Path):
    pytest.importorskip("transformers")
    folder = make_tiny_bert(tmp / "bert")
    rows = [("text", "label")] + [(f"win free prize cash {i}", "spam") for i in range(8)] + \
        [(f"see you at lunch {i}", "ham") for i in range(8)]
    with open(tmp / "t.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return tmp / "t.csv", dict(backbone=f"hf:{folder}")


def _detect_image(tmp: Path):
    return make_boxes(tmp / "d", "voc", n=8), dict(task="detect", backbone=TINY, image_size=64)


def _segment_image(tmp: Path):
    return make_masks(tmp / "d", "folders", n=8), dict(task="segment", backbone=TINY, image_size=64)


def _asr_audio(tmp: Path):
    pytest.importorskip("transformers")
    from reliability.asr_cases import _tiny_encoder, _tone

    root = tmp / "speech"
    root.mkdir()
    rows = [("file", "transcript", "split")]
    for i in range(8):
        _tone(root / f"c{i}.wav", freq=300 + 60 * i)
        rows.append((f"c{i}.wav", "ab ba" if i % 2 else "abb", "test" if i >= 6 else "train"))
    with open(root / "t.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root / "t.csv", dict(task="asr", backbone=_tiny_encoder(tmp))


def _tiny_whisper(tmp: Path) -> str:
    return f"hf:{make_tiny_whisper_asr(tmp / 'tiny_whisper_asr')}"


#: a strategy whose claim holds for some backbones only gets one it holds for (LoRA: attention layers; zero-shot: a
#: model that already does the task)
BACKBONE_FOR = {("classify", "image", "lora"): lambda tmp: "random:test_vit",
                ("classify", "audio", "lora"): lambda tmp: "random:test_vit", ("asr", "audio", "zero-shot"): _tiny_whisper}

DATA = {("classify", "image"): _classify_image, ("classify", "audio"): _classify_audio,
        ("classify", "text"): _classify_text, ("detect", "image"): _detect_image,
        ("segment", "image"): _segment_image, ("asr", "audio"): _asr_audio}


def _claimed() -> list[tuple[str, str, str]]:
    """(task, modality, strategy) for every combination the registries say works."""
    out = []
    for task_name, task in tasks().items():
        for modality in (task.modalities or tuple(modalities())):
            for name, strategy in strategies().items():
                if task.supports(strategy):
                    out.append((task_name, modality, STRATEGY_NAMES.get(name, name)))
    return out


def test_every_task_and_modality_has_conformance_data():
    assert {(t, m) for t, m, _ in _claimed()} <= set(DATA), "add a data builder for the new task or modality"


@pytest.mark.parametrize("task,modality,strategy", _claimed(), ids=lambda v: str(v))
def test_every_supported_combination_trains(task, modality, strategy, tmp_path):
    if strategy == "lora":
        pytest.importorskip("peft")
    data, settings = DATA[(task, modality)](tmp_path)
    if (task, modality, strategy) in BACKBONE_FOR:
        settings = {**settings, "backbone": BACKBONE_FOR[(task, modality, strategy)](tmp_path)}
    run = tk.fit(str(data), strategy=strategy, epochs=1, batch_size=4, workers=0, output=str(tmp_path / "runs"),
                 cache_dir=str(tmp_path / "c"), **settings)
    assert (run.path / "metrics.json").is_file() and run.metrics["task"] == task
    assert run.metrics["modality"] == modality and run.metrics["strategy"] == strategy
    if run.config.strategy == strategy and run.history:  # a loop ran: its rows are the loop's
        assert all("train_loss" in r for r in run.history if r["epoch"])
    assert tk.load(run.path).predict  # the run folder loads back
