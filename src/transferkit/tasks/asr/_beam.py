"""CTC beam search constrained to a lexicon (the training transcripts' words), with an optional KenLM n-gram
model, through flashlight-text's decoder (the one torchaudio wraps)."""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ConfigError
from ._text import BLANK, SEPARATOR, UNKNOWN


class LexiconBeam:
    """Beam search over a CTC head's log-probabilities whose words come from ``words`` (spelled with the CTC
    vocabulary, each followed by the word separator); ``lm``: a KenLM ``.arpa``/``.bin`` file over those words."""

    def __init__(self, symbols: list[str], words: list[str], lm: str | None = None, beam: int = 50,
                 lm_weight: float = 2.0, word_score: float = 0.0):
        try:
            from flashlight.lib.text.decoder import (CriterionType, LexiconDecoder,  # optional (audio extra)
                                                     LexiconDecoderOptions, SmearingMode, Trie, ZeroLM)
            from flashlight.lib.text.dictionary import Dictionary, create_word_dict  # optional (audio extra)
        except ImportError:
            raise ConfigError("--decode lexicon needs the flashlight-text package", None,
                              "pip install 'transferkit[audio]' (or flashlight-text)") from None
        known = set(symbols)
        spelled = {w: [[*w, SEPARATOR]] for w in words if w and set(w) <= known}
        spelled[UNKNOWN] = [[UNKNOWN]]
        self.tokens = Dictionary(list(symbols))
        self.words = create_word_dict(spelled)
        if lm:
            if not Path(lm).is_file():
                raise ConfigError(f"Language model {lm} does not exist", "a KenLM .arpa or .bin file", "Check --lm")
            from flashlight.lib.text.decoder.kenlm import KenLM  # optional (audio extra)

            try:
                self.lm = KenLM(str(lm), self.words)
            except RuntimeError as exc:  # KenLM's own error for a file that is not an n-gram model
                raise ConfigError(f"Language model {lm} could not be read by KenLM ({str(exc).splitlines()[0][:100]})",
                                  "an ARPA (.arpa) or KenLM binary (.bin) n-gram model",
                                  "Build one with KenLM's lmplz (and build_binary), or leave --lm out") from None
        else:
            self.lm = ZeroLM()
        sil, blank = symbols.index(SEPARATOR), symbols.index(BLANK)
        trie = Trie(len(symbols), sil)
        start = self.lm.start(False)
        for word, spellings in spelled.items():
            idx = self.words.get_index(word)
            _, score = self.lm.score(start, idx)
            for spelling in spellings:
                trie.insert([self.tokens.get_index(t) for t in spelling], idx, score)
        trie.smear(SmearingMode.MAX)
        options = LexiconDecoderOptions(beam_size=beam, beam_size_token=len(symbols), beam_threshold=50.0,
                                        lm_weight=lm_weight, word_score=word_score, unk_score=float("-inf"),
                                        sil_score=0.0, log_add=False, criterion_type=CriterionType.CTC)
        self.decoder = LexiconDecoder(options, trie, self.lm, sil, blank, self.words.get_index(UNKNOWN), [], False)

    def __call__(self, log_probs: torch.Tensor) -> str:
        """One utterance's (frames, symbols) log-probabilities → its best word sequence."""
        e = log_probs.detach().float().cpu().contiguous()
        results = self.decoder.decode(e.data_ptr(), e.shape[0], e.shape[1])
        if not results:
            return ""
        return " ".join(self.words.get_entry(i) for i in results[0].words if i >= 0 and self.words.get_entry(i) != UNKNOWN)
