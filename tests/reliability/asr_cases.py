"""Bad transcribed speech: each a listed skip, a warning, or one clear error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from conftest import TINY


def _tiny_encoder(tmp: Path) -> str:
    """A 1-layer Whisper encoder without a tokenizer (its ASR head is CTC), as an ``hf:`` folder."""
    import torch
    from transformers import WhisperConfig, WhisperModel

    folder = tmp / "tiny_whisper"
    if not folder.exists():
        torch.manual_seed(0)
        WhisperModel(WhisperConfig(vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1,
                                   encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                   decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=16,
                                   pad_token_id=1, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
                     ).save_pretrained(folder)
    return f"hf:{folder}"


def _tone(path: Path, seconds: float = 0.8, freq: float = 440.0) -> Path:
    import soundfile as sf

    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


def _corpus(tmp: Path, extra: list[tuple[str, str, str]] = (), encoding: str = "utf-8", header=("file", "transcript", "split"),
            folder: str = "speech") -> Path:
    root = tmp / folder
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(8):
        _tone(root / f"c{i}.wav", freq=300 + 60 * i)
        rows.append((f"c{i}.wav", "ab ba" if i % 2 else "abb", "test" if i >= 6 else "train"))
    with open(root / "t.csv", "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([*rows, *extra])
    return root / "t.csv"


def _train(tmp: Path, data: Path, *more: str) -> list[str]:
    return ["train", str(data), "--task", "asr", "--backbone", _tiny_encoder(tmp), "--epochs", "1", "--workers", "0",
            "--batch-size", "4", "--output", str(tmp / "runs"), *more]


def _with(extra, make=None):
    def build(tmp: Path, run: Path) -> list[str]:
        data = _corpus(tmp, extra)
        if make:
            make(data.parent)
        return _train(tmp, data)
    return build


def _non_utf8(tmp: Path, run: Path) -> list[str]:
    return _train(tmp, _corpus(tmp, [("c1.wav", "café crème", "train")], encoding="latin-1"))


def _no_transcript_column(tmp: Path, run: Path) -> list[str]:
    return _train(tmp, _corpus(tmp, header=("file", "words", "split")))


def _folder_missing_txt(tmp: Path, run: Path) -> list[str]:
    root = tmp / "clips"
    root.mkdir()
    for i in range(6):
        _tone(root / f"c{i}.wav", freq=300 + 60 * i)
        if i:
            (root / f"c{i}.txt").write_text("ab\n")
    return _train(tmp, root, "--val-fraction", "0", "--test-fraction", "0.4")


def _long_clip(tmp: Path, run: Path) -> list[str]:
    (tmp / "speech").mkdir(parents=True)
    _tone(tmp / "speech" / "long.wav", seconds=31.0)
    return _train(tmp, _corpus(tmp, [("long.wav", "ab", "train")]))


def _whisper_head_on_a_cnn(tmp: Path, run: Path) -> list[str]:
    args = _train(tmp, _corpus(tmp), "--head", "whisper")
    args[args.index("--backbone") + 1] = TINY
    return args


def _zero_shot_ctc(tmp: Path, run: Path) -> list[str]:
    return _train(tmp, _corpus(tmp), "--strategy", "zero-shot")


def _lm_not_arpa(tmp: Path, run: Path) -> list[str]:
    (tmp / "words.arpa").write_text("these are words, not an n-gram model\n")
    return _train(tmp, _corpus(tmp), "--decode", "lexicon", "--lm", str(tmp / "words.arpa"))


def _predict_text_file(tmp: Path, run: Path) -> list[str]:
    import transferkit as tk

    asr = tk.fit(str(_corpus(tmp)), task="asr", backbone=_tiny_encoder(tmp), epochs=1, workers=0, batch_size=4,
                 output=str(tmp / "asr_runs"), cache_dir=str(tmp / "c")).path
    (tmp / "notes.wav").write_text("not audio")
    return ["predict", str(asr), str(tmp / "notes.wav")]


def _image_backbone(tmp: Path, run: Path) -> list[str]:
    return _train(tmp, _corpus(tmp), "--backbone", "random:test_vit")  # the last --backbone given counts


def cases(Case) -> list:
    return [
        Case("asr_image_backbone", "--task asr with an image backbone (was an AttributeError)", "error",
             "needs a speech encoder", _image_backbone),
        Case("asr_unseen_characters", "test transcripts with characters no training transcript has", "warn",
             "never seen in the training transcripts", _with([("c8.wav", "abz q", "test")], lambda d: _tone(d / "c8.wav"))),
        Case("asr_empty_transcript", "a row with an empty transcript", "skip", "empty transcript",
             _with([("c1.wav", "", "train")])),
        Case("asr_punctuation_only_transcript", "a transcript of only punctuation ('?!': no words to score)", "skip",
             "has no words once normalised", _with([("c1.wav", "?!", "train")])),
        Case("asr_clip_listed_twice", "a clip listed twice with different transcripts", "skip",
             "listed 2 times with different transcripts", _with([("c1.wav", "ba ab", "train")])),
        Case("asr_missing_file", "a row naming an audio file that does not exist", "skip", "does not exist",
             _with([("gone.wav", "ab", "train")])),
        Case("asr_too_short_for_ctc", "a 0.1 s clip with a 40-letter transcript (CTC cannot align it)", "skip",
             "CTC cannot align it", _with([("short.wav", "a" * 40, "train")], lambda d: _tone(d / "short.wav", 0.1))),
        Case("asr_clip_over_30s", "a 31 s training clip for a Whisper encoder", "skip",
             "longer than the encoder's 30 s window", _long_clip),
        Case("asr_non_utf8_csv", "a transcript table saved as Latin-1", "error", "is not valid UTF-8", _non_utf8),
        Case("asr_no_transcript_column", "a table without a transcript column", "error", "no transcript column",
             _no_transcript_column),
        Case("asr_folder_missing_txt", "a folder clip without its .txt transcript", "skip", "is missing beside it",
             _folder_missing_txt),
        Case("asr_whisper_head_on_cnn", "--head whisper with an image backbone", "error",
             "--head whisper needs a Whisper backbone", _whisper_head_on_a_cnn),
        Case("asr_zero_shot_without_decoder", "--strategy zero-shot with a CTC head", "error",
             "zero-shot needs a model that transcribes", _zero_shot_ctc),
        Case("asr_lm_not_arpa", "--lm naming a text file that is not an n-gram model", "error",
             "could not be read by KenLM", _lm_not_arpa),
        Case("asr_predict_not_audio", "predict on a text file named .wav with an ASR run", "error",
             "cannot be decoded", _predict_text_file),
    ]
