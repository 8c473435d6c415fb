"""The two ASR heads on a speech encoder: a CTC layer over its frames, and Whisper's own decoder.

Both models take the batch dict of ``_data.SpeechDataset.collate_fn`` (``input``: features padded to the batch's
longest clip, ``lengths``: each clip's own input length) and keep the ``backbone`` / ``head`` names every strategy
reads (what trains, what is frozen, what LoRA wraps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Whisper's transcription prompt: <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>
WHISPER_PROMPT = (50258, 50259, 50359, 50363)
WHISPER_EOT = 50257


class CTCModel(nn.Module):
    """Encoder frames → a linear layer → per-frame log-probabilities over the character vocabulary.

    ``upsample`` repeats every frame (an encoder whose frame rate is too low for its transcripts' length)."""

    def __init__(self, backbone, vocab_size: int, upsample: int = 1):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, vocab_size)
        self.upsample = upsample

    def forward(self, x: dict) -> dict:
        h = self.backbone.forward_features(x["input"])
        if self.upsample > 1:
            h = h.repeat_interleave(self.upsample, dim=1)
        lengths = (self.backbone.frame_lengths(x["lengths"]) * self.upsample).clamp(max=h.shape[1])
        return {"log_probs": F.log_softmax(self.head(h).float(), dim=-1), "lengths": lengths}

    @staticmethod
    def loss(outputs: dict, targets: torch.Tensor) -> torch.Tensor:
        """CTC (blank 0), mean over the batch of the per-utterance loss divided by its target length."""
        target_lengths = (targets >= 0).sum(1)
        flat = targets[targets >= 0]
        return F.ctc_loss(outputs["log_probs"].transpose(0, 1), flat, outputs["lengths"], target_lengths,
                          blank=0, reduction="mean", zero_infinity=True)

    @torch.inference_mode()
    def greedy(self, x: dict) -> list[torch.Tensor]:
        out = self(x)
        best = out["log_probs"].argmax(-1)
        return [best[i, : int(n)] for i, n in enumerate(out["lengths"])]


class WhisperModel(nn.Module):
    """Whisper's encoder (the backbone) and its decoder (the head), trained with teacher forcing on the transcripts'
    tokens after the transcription prompt; greedy decoding with a KV cache.

    As loaded, the encoder reads Whisper's 30 s window (every clip padded to it), as the model was trained: fed a
    short clip's own frames, the pretrained decoder repeats itself (AN4: 59% WER instead of 20% on 12 clips).
    Training switches to each clip's own length (``window`` 0, part of the weights), ~10× less encoder work on a
    3 s clip, and the decoder learns to read it; a run that keeps the untrained model keeps the window."""

    def __init__(self, backbone, decoder, window: int = 3000):
        super().__init__()
        self.backbone = backbone
        self.head = decoder
        self.register_buffer("window", torch.tensor(int(window)))  # mel frames every input is padded to; 0: own length

    def train(self, mode: bool = True):
        if mode:
            self.window.zero_()
        return super().train(mode)

    def encode(self, x: dict) -> torch.Tensor:
        mel, window = x["input"], int(self.window)
        if mel.shape[-1] < window:
            mel = F.pad(mel, (0, window - mel.shape[-1]), value=float(mel.min()))
        return self.backbone.forward_features(mel)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.head.embed_tokens.weight.T  # the output projection is tied to the embeddings

    def forward(self, x: dict) -> dict:
        enc = self.encode(x)
        out = self.head(input_ids=x["decoder_input"], encoder_hidden_states=enc, use_cache=False)
        return {"logits": self.logits(out.last_hidden_state).float()}

    @staticmethod
    def loss(outputs: dict, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the transcript's tokens and the end token (prompt positions are -100)."""
        logits = outputs["logits"]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    @torch.inference_mode()
    def greedy(self, x: dict, max_new: int = 120) -> list[torch.Tensor]:
        enc = self.encode(x)
        batch = enc.shape[0]
        ids = torch.tensor(WHISPER_PROMPT, device=enc.device).expand(batch, -1)
        out = self.head(input_ids=ids, encoder_hidden_states=enc, use_cache=True)
        done = torch.zeros(batch, dtype=torch.bool, device=enc.device)
        steps = []
        limit = min(max_new, self.head.config.max_target_positions - len(WHISPER_PROMPT))
        for _ in range(limit):
            nxt = self.logits(out.last_hidden_state[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, WHISPER_EOT), nxt)
            steps.append(nxt)
            done |= nxt == WHISPER_EOT
            if bool(done.all()):
                break
            out = self.head(input_ids=nxt[:, None], encoder_hidden_states=enc, past_key_values=out.past_key_values,
                            use_cache=True)
        tokens = torch.stack(steps, 1) if steps else torch.zeros(batch, 0, dtype=torch.long)
        return [t[: int((t == WHISPER_EOT).nonzero()[0])] if bool((t == WHISPER_EOT).any()) else t for t in tokens]
