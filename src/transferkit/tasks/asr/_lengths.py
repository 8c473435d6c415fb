"""Which training clips a speech model can learn from: within the encoder's window, with the frames CTC needs for
the transcript, with no more tokens than Whisper's decoder takes. The rest are listed with their reason."""

from __future__ import annotations

import logging

import torch

from ...modalities import duration
from ._model import WHISPER_PROMPT
from ._text import Vocabulary, normalise

log = logging.getLogger("transferkit")


def check_lengths(data, backbone, head: str, dc: dict) -> int:
    """Leave out (and list) training clips the model cannot learn from: longer than the encoder's window, or — for
    CTC — with fewer frames than their transcript needs, or — for Whisper's decoder — with more tokens than it takes. Returns the frame upsampling CTC needs, if any."""
    secs = {p: duration(p) for p in data.splits_["train"].inputs}
    reasons: dict[str, str] = {}
    limit = dc["max_seconds"]
    for split, part in data.splits_.items():
        long = {p: f"{s:.1f} s is longer than the encoder's {limit:.0f} s window; split it into shorter clips"
                for p in part.inputs if limit and (s := secs.get(p) or duration(p)) > limit}
        if split == "train":
            reasons.update(long)  # listed below with the clips CTC cannot align
        elif long:
            data.drop(split, long)
            log.warning("skipped %d %s clip(s) longer than %.0f s (listed in bad_files.txt)", len(long), split, limit)
    upsample = 1
    if head == "ctc":
        vocab = Vocabulary(data.classes_)
        rate = _frames_per_second(backbone, dc)
        need = {p: _ctc_frames(vocab.encode(normalise(data.transcripts_[p], dc["normalise"]))) for p in secs}
        short = [p for p in secs if need[p] > rate * secs[p]]
        if len(short) > len(secs) // 4:  # the encoder's frame rate is too low for these transcripts
            upsample = 2
            log.warning("%d of %d training transcripts need more CTC frames than the encoder gives (%.0f/s): every "
                        "frame is repeated twice", len(short), len(secs), rate)
        for p in secs:
            if need[p] > rate * upsample * secs[p] and p not in reasons:
                reasons[p] = (f"CTC cannot align it: {need[p]} frames needed for its transcript, the clip gives "
                              f"{int(rate * upsample * secs[p])} ({secs[p]:.2f} s)")
    if head == "whisper":  # the decoder reads the prompt, the transcript's tokens and the end token
        room = int(getattr(backbone.model.config, "max_target_positions", 448)) - len(WHISPER_PROMPT) - 1
        for p in secs:
            n = len(backbone.tokenizer.encode(" " + normalise(data.transcripts_[p], dc["normalise"]),
                                              add_special_tokens=False))
            if n > room and p not in reasons:
                reasons[p] = (f"its transcript is {n} tokens, more than the {room} Whisper's decoder takes after its "
                              "prompt; split the clip into shorter ones")
    if reasons:
        data.drop("train", reasons)
        log.warning("skipped %d training clip(s) the model cannot learn from (listed in bad_files.txt), e.g. %s: %s",
                    len(reasons), *next(iter(reasons.items())))
    return upsample


def _frames_per_second(backbone, dc: dict) -> float:
    one_second = torch.tensor([16000 if dc["n_mels"] == 0 else 100])
    return float(backbone.frame_lengths(one_second)[0])


def _ctc_frames(ids: list[int]) -> int:
    """Frames CTC needs for ``ids``: one per symbol, plus a blank between repeated symbols."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)
