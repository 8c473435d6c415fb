"""Transcripts: the scoring normalisation, the CTC character vocabulary, and WER/CER through jiwer."""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from collections import Counter

import numpy as np

log = logging.getLogger("transferkit")

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BLANK, SEPARATOR, UNKNOWN = "<blank>", "|", "<unk>"
NORMALISE = ("basic", "none")


def lexicon(transcripts, mode: str) -> list[str]:
    """The distinct words of ``transcripts`` normalised by ``mode``, sorted (the lexicon beam's vocabulary)."""
    return sorted({w for t in transcripts for w in normalise(t, mode).split()})


def normalise(text: str, mode: str = "basic") -> str:
    """``basic``: lower-case, digits spelled one word each ("24" → "two four"), punctuation removed (apostrophes
    inside words kept), whitespace collapsed. ``none``: whitespace collapsed only. Applied to references and
    hypotheses alike before scoring, and to the transcripts a CTC head learns."""
    text = unicodedata.normalize("NFKC", text)
    if mode == "basic":
        text = text.lower()
        text = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text)
        text = re.sub(r"(?<![\w])'|'(?![\w])", " ", text)  # quotes, not apostrophes inside words
        text = "".join(c if c.isalnum() or c in " '" else " " for c in text)
    return " ".join(text.split())


class Vocabulary:
    """Characters of the training transcripts for a CTC head: id 0 the blank, then ``|`` between words, then the
    characters by frequency; anything else decodes and encodes as ``<unk>`` (id of the last entry)."""

    def __init__(self, symbols: list[str]):
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, transcripts: list[str]) -> "Vocabulary":
        counts = Counter(c for t in transcripts for c in t if c != " ")
        return cls([BLANK, SEPARATOR, *sorted(counts, key=lambda c: (-counts[c], c)), UNKNOWN])

    def encode(self, text: str) -> list[int]:
        unk = self.index[UNKNOWN]
        return [self.index[SEPARATOR] if c == " " else self.index.get(c, unk) for c in text]

    def decode(self, ids: list[int]) -> str:
        """Symbols → text: ``|`` → space, blanks dropped, runs of spaces collapsed."""
        chars = (self.symbols[i] if i < len(self.symbols) else UNKNOWN for i in ids if i != 0)
        return " ".join("".join(" " if s == SEPARATOR else s for s in chars).split())

    def decode_greedy(self, ids: np.ndarray) -> str:
        """Best path: merge repeats, drop blanks, ``|`` → space."""
        path = ids.tolist()
        return self.decode([i for k, i in enumerate(path) if k == 0 or i != path[k - 1]])

    def __len__(self) -> int:
        return len(self.symbols)


def warn_unseen(vocab: Vocabulary, transcripts: dict[str, str], where: str) -> dict[str, int]:
    """Characters in ``transcripts`` the vocabulary lacks: counted, warned about once, mapped to ``<unk>``."""
    counts: Counter = Counter()
    for t in transcripts.values():
        counts.update(c for c in t if c != " " and c not in vocab.index)
    if counts:
        shown = ", ".join(f"{c!r} ×{n}" for c, n in counts.most_common(8))
        log.warning("%s: %d character(s) never seen in the training transcripts (%s) are scored as written but "
                    "a CTC head can only write them as %s", where, sum(counts.values()), shown, UNKNOWN)
    return dict(counts)


def error_rates(refs: list[str], hyps: list[str]) -> dict:
    """Corpus WER and CER (jiwer) and the per-utterance edit counts behind them."""
    import jiwer  # optional (audio extra)

    def n_words(s: str) -> int:
        return len(s.split())

    pairs = list(zip(refs, hyps))
    words, chars = [n_words(r) for r in refs], [len(r) for r in refs]
    w_err = [_edits(jiwer.process_words, r, h, n_words) for r, h in pairs]
    c_err = [_edits(jiwer.process_characters, r, h, len) for r, h in pairs]
    return {"wer": sum(w_err) / max(1, sum(words)), "cer": sum(c_err) / max(1, sum(chars)),
            "word_errors": w_err, "words": words, "char_errors": c_err, "chars": chars}


def _edits(process, ref: str, hyp: str, size) -> int:
    """Substitutions + deletions + insertions of one utterance; with an empty side, all of the other side's units
    (``size`` counts them) are deletions or insertions."""
    if not ref or not hyp:
        return size(ref) + size(hyp)
    o = process(ref, hyp)
    return int(o.substitutions + o.deletions + o.insertions)


def marked_diff(ref: str, hyp: str) -> tuple[str, str]:
    """HTML of reference and hypothesis with the words that differ marked (jiwer's word alignment)."""
    import jiwer  # optional (audio extra)

    r, h = ref.split(), hyp.split()
    if not r or not h:
        return html.escape(ref) or "∅", html.escape(hyp) or "∅"
    out_r, out_h = [], []
    for chunk in jiwer.process_words(ref, hyp).alignments[0]:
        rs, hs = r[chunk.ref_start_idx:chunk.ref_end_idx], h[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type == "equal":
            out_r += map(html.escape, rs)
            out_h += map(html.escape, hs)
        else:
            out_r += [f"<mark class={chunk.type}>{html.escape(w)}</mark>" for w in rs]
            out_h += [f"<mark class={chunk.type}>{html.escape(w)}</mark>" for w in hs]
    return " ".join(out_r), " ".join(out_h)
