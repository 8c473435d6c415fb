"""Transcribed speech: a CSV/TSV/JSONL of ``file,transcript`` (optional ``split`` and ``group`` columns) or a folder
of audio files each with a same-named ``.txt`` beside it; the batches the ASR models read."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data import SPLIT_ALIASES, SPLITS, Items, LabelledData, clean_split, read_rows
from ...errors import DataError
from ...modalities import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    check_audio,
    duration,
    log_mel,
    random_gain,
    spec_augment,
    standardise,
)
from ._text import Vocabulary, normalise

log = logging.getLogger("transferkit")
PATH_COLUMNS = ("file", "path", "audio", "filename", "file_name", "wav")
TEXT_COLUMNS = ("transcript", "text", "sentence", "transcription", "label")


class TranscriptData(LabelledData):
    """Audio clips with transcripts. After :meth:`setup`: ``transcripts_`` (path → transcript as written),
    ``classes_`` (the CTC character vocabulary of the normalised training transcripts) and the splits (labels
    are 0: the transcript is the target)."""

    kind = "audio"
    check = staticmethod(check_audio)
    wanted = "decodable audio files with a non-empty transcript"

    def __init__(self, path: str | Path, normalise: str = "basic", path_column: str | None = None,
                 text_column: str | None = None, saved: dict | None = None, **split):
        super().__init__(**{k: v for k, v in split.items() if k != "label_by"})
        self.path = Path(path)
        self.normalise = normalise
        self.path_column, self.text_column = path_column, text_column
        self.saved = saved  # {split: (inputs, transcripts)} of an earlier run (--resume)

    def describe(self) -> str:
        return f"transcribed audio {self.path}"

    def setup(self) -> "TranscriptData":
        if self.is_setup:
            return self
        self.bad_files_: list[tuple[str, str]] = []
        if self.saved is not None:
            rows = [(p, t, k) for k, (ps, ts) in self.saved.items() for p, t in zip(ps, ts)]
        else:
            rows = self._folder() if self.path.is_dir() else self._table()
            good = {str(p) for p in self._filter_bad([Path(p) for p, _, _ in rows])}
            rows = [r for r in rows if r[0] in good]
        if not rows:
            raise DataError(f"{self.describe()} has no usable clips", self.wanted,
                            "Check the paths and transcripts (see the listed problems)")
        self.transcripts_ = {p: t for p, t, _ in rows}
        if any(k for _, _, k in rows):
            parts = {k: [i for i, r in enumerate(rows) if (r[2] or "train") == k] for k in SPLITS}
            self.presplit_ = True
        else:
            parts = self.split_indices([p for p, _, _ in rows], [0] * len(rows), ["clip"])
            self.presplit_ = False
        self.splits_ = {k: Items([rows[i][0] for i in parts.get(k, [])], [0] * len(parts.get(k, [])))
                        for k in SPLITS}
        if not len(self.splits_["train"]):
            raise DataError(f"{self.describe()} has no training clips", "a train split", "Add training clips")
        if self.shots:
            keep = np.random.default_rng(self.seed).permutation(len(self.splits_["train"]))[: self.shots]
            self.splits_["train"] = self.splits_["train"].subset(sorted(keep.tolist()))
        train_text = [normalise(self.transcripts_[p], self.normalise) for p in self.splits_["train"].inputs]
        self.classes_ = Vocabulary.build(train_text).symbols
        self.leakage_ = self._check_leaks()
        return self

    def _table(self) -> list[tuple[str, str, str | None]]:
        table = read_rows(self.path, self.quoting)
        self.bad_files_ += table.problems
        header = [h.strip().lower() for h in table.header]
        path_col = _pick(header, self.path_column, PATH_COLUMNS, "audio path", self.path)
        text_col = _pick(header, self.text_column, TEXT_COLUMNS, "transcript", self.path)
        keys = dict(zip(header, table.header))
        out = []
        for row, line in zip(table.rows, table.lines):
            where = f"{self.path}:{line}"
            value, text = (row.get(keys[path_col]) or "").strip(), (row.get(keys[text_col]) or "")
            if not value:
                self.bad_files_.append((where, "no audio path"))
                continue
            p = Path(value) if Path(value).is_absolute() else self.path.parent / value
            if not p.is_file():
                self.bad_files_.append((str(p), f"{where}: the audio file does not exist"))
                continue
            if not text.strip():
                self.bad_files_.append((str(p), f"{where}: empty transcript"))
                continue
            if not normalise(text, self.normalise):
                self.bad_files_.append((str(p), f"{where}: {self._wordless(text)}"))
                continue
            group = (row.get(keys["group"]) or "").strip() if "group" in keys else ""
            if group:
                self.row_groups_[str(p)] = group
            split = clean_split(row.get(keys["split"]), where) if "split" in keys else None
            out.append((str(p), text.strip(), split))
        out = self._once_each(out)
        self._report_problems()
        return out

    def _once_each(self, rows: list[tuple[str, str, str | None]]) -> list[tuple[str, str, str | None]]:
        """A clip listed more than once: kept once when its rows agree (transcript and split); left out and listed
        when they do not — which transcript is right cannot be told."""
        by_path: dict[str, list[tuple[str, str, str | None]]] = {}
        for r in rows:
            by_path.setdefault(r[0], []).append(r)
        out = []
        for path, rs in by_path.items():
            if len({(" ".join(t.split()), k) for _, t, k in rs}) == 1:
                out.append(rs[0])
                if len(rs) > 1:
                    log.info("%s is listed %d times with the same transcript: used once", path, len(rs))
                continue
            texts = "; ".join(f"{t[:30]!r} ({k or 'no split'})" for _, t, k in rs[:3])
            self.bad_files_.append((path, f"listed {len(rs)} times with different transcripts or splits ({texts}); "
                                          "left out: keep one row per clip"))
        return out

    def _folder(self) -> list[tuple[str, str, str | None]]:
        out = []
        for p in sorted(f for f in self.path.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file()):
            txt = p.with_suffix(".txt")
            if not txt.is_file():
                self.bad_files_.append((str(p), f"no transcript: {txt.name} is missing beside it"))
                continue
            try:
                text = txt.read_text(encoding="utf-8-sig").strip()
            except UnicodeDecodeError:
                self.bad_files_.append((str(p), f"{txt.name} is not valid UTF-8 (re-save it as UTF-8)"))
                continue
            if not text:
                self.bad_files_.append((str(p), f"empty transcript in {txt.name}"))
                continue
            if not normalise(text, self.normalise):
                self.bad_files_.append((str(p), f"{txt.name}: {self._wordless(text)}"))
                continue
            rel = p.relative_to(self.path).parts
            split = SPLIT_ALIASES.get(rel[0].lower()) if len(rel) > 1 else None  # train/, val/ (valid/, dev/ …), test/
            out.append((str(p), " ".join(text.split()), split))
        if not out and not self.bad_files_:
            raise DataError(f"{self.path} holds no audio files", "audio files, each with a same-named .txt transcript",
                            f"Put clips ({', '.join(AUDIO_EXTENSIONS[:4])} …) and their transcripts in the folder")
        self._report_problems()
        return out

    def _wordless(self, text: str) -> str:
        return (f"the transcript {text[:40]!r} has no words once normalised ('{self.normalise}' normalisation), so it "
                "cannot be scored; write out what is said")

    def _report_problems(self) -> None:
        if self.bad_files_ and self.on_bad_file == "error":
            p, r = self.bad_files_[0]
            raise DataError(f"Bad input {p}: {r}", self.wanted,
                            f"Fix it ({len(self.bad_files_)} problem(s) in all), or use --on-bad-file skip")
        for p, r in self.bad_files_[:5]:
            log.warning("skipped %s: %s", p, r)
        if len(self.bad_files_) > 5:
            log.warning("skipped %d more (listed in the run's bad_files.txt)", len(self.bad_files_) - 5)

    def drop(self, split: str, reasons: dict[str, str]) -> None:
        """Leave ``reasons``' inputs out of ``split`` (listed with the bad files)."""
        part = self.splits_[split]
        keep = [i for i, p in enumerate(part.inputs) if p not in reasons]
        self.splits_[split] = part.subset(keep)
        self.bad_files_ += list(reasons.items())

    def split_extras(self, split: str) -> dict:
        return {"transcripts": [self.transcripts_[p] for p in self.splits_[split].inputs]}

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits_.items() if len(v))
        return f"{len(self.transcripts_)} transcribed clips ({sizes}); {len(self.classes_)} CTC symbols"


def _pick(header: list[str], given: str | None, names: tuple[str, ...], what: str, path: Path) -> str:
    if given and given.lower() in header:
        return given.lower()
    found = next((n for n in names if n in header), None)
    if found is None:
        raise DataError(f"{path} has no {what} column (columns: {', '.join(header) or 'none'})",
                        f"a header with a {what} column: one of {', '.join(names)}",
                        "Rename the column, e.g. `file,transcript`")
    return found


class SpeechOps:
    """Waveform → the encoder's input over the whole clip (never cropped). Training augmentation: speed
    perturbation (0.9 / 1.0 / 1.1), ±6 dB gain, Gaussian noise at ``noise_snr`` dB, SpecAugment (``standard``)."""

    def __init__(self, augment: str = "none", n_mels: int = 80, normalize: bool = False, noise_snr: float | None = None):
        self.augment, self.n_mels, self.normalize, self.noise_snr = augment, n_mels, normalize, noise_snr

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if self.augment != "none":
            factor = (0.9, 1.0, 1.1)[int(torch.randint(0, 3, ()))]
            if factor != 1.0:
                import soxr  # optional (audio extra)

                wave = torch.from_numpy(soxr.resample(wave.numpy(), SAMPLE_RATE * factor, SAMPLE_RATE))
            wave = random_gain(wave)
            if self.noise_snr is not None:
                power = wave.pow(2).mean().clamp(min=1e-10)
                wave = wave + torch.randn_like(wave) * torch.sqrt(power / 10 ** (self.noise_snr / 10))
        if not self.n_mels:
            return standardise(wave) if self.normalize else wave
        spec = log_mel(wave, self.n_mels)
        return spec_augment(spec) if self.augment == "standard" else spec

    def __repr__(self) -> str:
        return f"SpeechOps(augment={self.augment!r}, n_mels={self.n_mels}, noise_snr={self.noise_snr})"


class SpeechDataset(torch.utils.data.Dataset):
    """(clip, transcript) → (encoder input over the whole clip, target ids). ``lengths`` (the clips' durations)
    lets the loop batch clips of similar length and inference run shortest first."""

    def __init__(self, decoded, targets: list[list[int]], prompt: tuple[int, ...] = ()):
        self.decoded, self.targets, self.prompt = decoded, targets, tuple(prompt)
        self.items = decoded.items
        self.held = getattr(decoded, "held", None)
        held = self.held or [None] * len(self.items)  # decoded clips give their length without another read
        self.lengths = [len(h) / SAMPLE_RATE if h is not None else duration(p) for p, h in zip(self.items.inputs, held)]

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, i: int):
        x, _ = self.decoded[i]
        return x, self.targets[i]

    def collate_fn(self, batch):
        return collate_speech(batch, self.prompt)


def collate_speech(batch, prompt: tuple[int, ...] = ()):
    """(features, target ids) pairs → ({input, lengths[, decoder_input]}, padded targets)."""
    feats, targets = zip(*batch)
    width = max(f.shape[-1] for f in feats)
    x = torch.stack([F.pad(f, (0, width - f.shape[-1]), value=float(f.min()) if f.ndim > 1 else 0.0)
                     for f in feats])
    out = {"input": x, "lengths": torch.tensor([f.shape[-1] for f in feats])}
    if prompt:  # teacher forcing: the decoder reads prompt + tokens, predicts tokens + end (prompt positions -100)
        seqs = [list(prompt) + list(t) for t in targets]
        n = max(len(s) for s in seqs)
        out["decoder_input"] = torch.tensor([s[:-1] + [s[-1]] * (n - len(s)) for s in seqs])
        y = torch.full((len(seqs), n - 1), -100, dtype=torch.long)
        for r, t in enumerate(targets):
            y[r, len(prompt) - 1:len(prompt) - 1 + len(t)] = torch.tensor(t, dtype=torch.long)
        return out, y
    y = torch.full((len(targets), max(1, max(len(t) for t in targets))), -1, dtype=torch.long)
    for r, t in enumerate(targets):
        y[r, : len(t)] = torch.tensor(t, dtype=torch.long)
    return out, y
