"""Speech recognition: transcripts from audio clips. A CTC layer over a pretrained speech encoder's frames (a
character vocabulary from the training transcripts), or Whisper's own decoder fine-tuned with teacher forcing;
WER and CER through jiwer on normalised text; the pretrained Whisper's zero-shot transcripts as the baseline."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import _runfolder as rf
from ...config import Option, load_config_file
from ...data import ImageTransform, split_settings
from ...errors import ConfigError, DataError
from ...evaluation import paired_lower
from ...features import infer_each
from ...modalities import SAMPLE_RATE, AudioDecode, cached_dataset, input_contract, read_audio
from .._base import Task, register_task
from ._beam import LexiconBeam
from ._data import SpeechDataset, SpeechOps, TranscriptData, collate_speech
from ._export import export
from ._lengths import check_lengths
from ._model import WHISPER_EOT, WHISPER_PROMPT, CTCModel, WhisperModel
from ._report import sections
from ._text import Vocabulary, error_rates, lexicon, normalise, warn_unseen

log = logging.getLogger("transferkit")
HEADS = ("ctc", "whisper")
MAX_SECONDS = 30.0  # Whisper's encoder window


@register_task
class SpeechRecognition(Task):
    name = "asr"
    description = "transcripts of speech (a table of clips and transcripts, or .txt files beside the clips)"
    options = (
        Option("normalise", default="basic", help="asr: scoring normalisation, basic (lower-case, no punctuation, "
               "digits as words) | none", choices=("basic", "none")),
        Option("noise_snr", float, None, "asr: add training noise at this SNR in dB", low=-20.0, high=100.0,
               wanted="a signal-to-noise ratio in dB, -20 to 100"),
        Option("decode", default="greedy", help="asr, CTC head: greedy | lexicon (beam search over the training "
               "words; --lm adds KenLM)", choices=("greedy", "lexicon")),
        Option("lm", help="asr, --decode lexicon: a KenLM n-gram model (.arpa or .bin)", path=True),
    )
    compare_metrics = ("wer", "cer")
    lower_is_better = ("wer", "cer")
    modalities = ("audio",)
    reads_inputs = True  # whole clips with token targets: read and batched by the task
    default_backbones = ("packaged:whisper_base",)  # transcribes as loaded: the zero-shot line to beat
    baseline_strategy = "zero-shot"  # compare's reference line where the backbone can transcribe; else scratch
    labels_are = "CTC symbols"
    #: CTC: a new layer at 1e-3 over an encoder at 5e-5; Whisper: its decoder at 1e-4, the encoder at 1e-5 (on AN4
    #: with speakers held out: test WER 6.4% against 16.7% for both at 1e-5 and 35.9% as loaded; the paired test
    #: against the model as loaded, not a smaller rate, is what keeps a run that overshoots from being kept)
    head_defaults = {"ctc": {"lr": 1e-3, "backbone_lr_mult": 0.05}, "whisper": {"lr": 1e-4, "backbone_lr_mult": 0.1}}

    def __init__(self, transcripts: dict | None = None, vocab: list[str] | None = None, head: str = "ctc",
                 mode: str = "basic", groups: dict | None = None, tokenizer=None, beam=None):
        self.transcripts = transcripts or {}
        self.vocab = Vocabulary(vocab or [])
        self.head, self.mode, self.groups, self.tokenizer = head, mode, groups or {}, tokenizer
        self.beam = beam  # a LexiconBeam (--decode lexicon), else greedy decoding

    # -- data ------------------------------------------------------------------------------------------------
    @classmethod
    def read_data(cls, cfg, **split) -> TranscriptData:
        if cfg.label_by:
            raise ConfigError("--label-by does not apply to speech recognition", "transcripts in a table or .txt files",
                              "Leave --label-by out")
        return TranscriptData(cfg.data, cfg.normalise, cfg.path_column, cfg.text_column, **{**split_settings(cfg), **split})

    @classmethod
    def saved_data(cls, run_dir: Path, modality) -> TranscriptData:
        saved = rf.read_splits(run_dir)
        cfg = load_config_file(Path(run_dir) / rf.CONFIG)
        return TranscriptData(run_dir, cfg.get("normalise", "basic"),
                              saved={k: (v["inputs"], v.get("transcripts", [])) for k, v in saved.items()})

    title = "speech recognition"
    unsupported = "its head reads every frame, never pooled cached features"
    unsupported_fix = "Use --strategy frozen for a frozen encoder (the head trains)"

    @classmethod
    def supports(cls, strategy) -> bool:
        return not (strategy.probe_first or strategy.probe_after)  # zero-shot too: Whisper transcribes as loaded

    @classmethod
    def default_strategy(cls, modality, items) -> str:
        return "finetune"

    @classmethod
    def train_defaults(cls, cfg, backbone) -> dict:
        return cls.head_defaults[resolve_head(cfg, backbone)]

    @classmethod
    def pipeline(cls, backbone, cfg, data=None):
        if not hasattr(backbone, "frame_lengths"):  # an image or text backbone: no frames to align a transcript to
            raise ConfigError(f"Task asr needs a speech encoder; {cfg.backbone} is not one", "a Whisper or wav2vec2-"
                              "style backbone (packaged:whisper_base, hf:<speech model>)",
                              "Leave --backbone out for the packaged Whisper-base, or name a speech model")
        cfg.head = resolve_head(cfg, backbone)
        speech = backbone.pretrained_cfg.get("audio") or {}
        waveform = speech.get("input") == "waveform"
        dc = {"sample_rate": 16000, "n_mels": 0 if waveform else int(speech.get("n_mels", 80)),
              "normalize": bool(speech.get("normalize", False)), "head": cfg.head, "normalise": cfg.normalise,
              "max_seconds": MAX_SECONDS if cfg.head == "whisper" or "max_frames" in speech else None, "upsample": 1}
        if cfg.strategy == "zero-shot" and cfg.head != "whisper":
            raise ConfigError("Strategy zero-shot needs a model that transcribes as loaded (Whisper's decoder)",
                              "--head whisper with a Whisper backbone", "Use a trained strategy for a CTC head")
        if data is not None:
            dc["upsample"] = check_lengths(data, backbone, cfg.head, dc)
        if cfg.decode == "lexicon" or cfg.lm:
            if cfg.head != "ctc":
                raise ConfigError("--decode lexicon / --lm apply to a CTC head (Whisper's decoder is its own language "
                                  "model)", "--head ctc", "Leave --decode and --lm out for a Whisper head")
            words = lexicon((data.transcripts_[p] for p in data.splits_["train"].inputs), cfg.normalise) \
                if data is not None else []
            dc.update(decode="lexicon", lexicon=words, lm=str(Path(cfg.lm).resolve()) if cfg.lm else None)
        ops = dict(n_mels=dc["n_mels"], normalize=dc["normalize"])
        return _transform(SpeechOps(cfg.augment, noise_snr=cfg.noise_snr, **ops)), _transform(SpeechOps(**ops)), dc

    def eval_transform(self, meta, backbone=None):
        dc = meta["data_config"]
        return _transform(SpeechOps(n_mels=dc["n_mels"], normalize=dc["normalize"]))

    @classmethod
    def for_run(cls, cfg, data, backbone, data_config) -> "SpeechRecognition":
        inputs = [p for part in data.splits_.values() for p in part.inputs]
        groups = data._groups(inputs)
        if cfg.head == "ctc":  # characters a CTC head can never write: said once, before training
            held_out = [p for k in ("val", "test") for p in data.splits_[k].inputs]
            warn_unseen(Vocabulary(data.classes_), {p: normalise(data.transcripts_[p], cfg.normalise) for p in held_out},
                        "val/test transcripts")
        return cls(data.transcripts_, data.classes_, cfg.head, cfg.normalise,
                   dict(zip(inputs, groups)) if groups else {}, *_decoders(cfg.head, data.classes_, data_config, backbone))

    @classmethod
    def for_saved(cls, run_dir, meta, cfg, backbone) -> "SpeechRecognition":
        transcripts = {}
        for part in rf.read_splits(run_dir).values():
            transcripts.update(zip(part["inputs"], part.get("transcripts", [])))
        return cls(transcripts, meta["labels"], meta["head"], meta["data_config"]["normalise"],
                   None, *_decoders(meta["head"], meta["labels"], meta["data_config"], backbone))

    def with_data(self, data) -> "SpeechRecognition":
        data.setup()
        return SpeechRecognition(data.transcripts_, self.vocab.symbols, self.head, self.mode, tokenizer=self.tokenizer,
                                 beam=self.beam)

    def targets(self, inputs) -> list[list[int]]:
        texts = [normalise(self.transcripts.get(p, ""), self.mode) for p in inputs]
        if self.head == "ctc":
            return [self.vocab.encode(t) for t in texts]
        return [self.tokenizer.encode(" " + t, add_special_tokens=False) + [WHISPER_EOT] if t else [WHISPER_EOT]
                for t in texts]

    def dataset(self, backbone, items, transform, cfg=None, fill=False, progress=None):
        decoded = cached_dataset(items, transform, cfg, fill, progress, read_audio)
        return SpeechDataset(decoded, self.targets(items.inputs), WHISPER_PROMPT if self.head == "whisper" else ())

    def example_input(self, data_config, n: int = 2):
        return None

    # -- model and loop ----------------------------------------------------------------------------------
    def build_model(self, backbone, meta) -> torch.nn.Module:
        if meta["head"] == "whisper":
            return WhisperModel(backbone, backbone.text_decoder())
        return CTCModel(backbone, len(meta["labels"]), (meta.get("data_config") or {}).get("upsample", 1))

    def loss(self, outputs: dict, targets) -> torch.Tensor:
        return (CTCModel if "log_probs" in outputs else WhisperModel).loss(outputs, targets)

    def scores_untrained(self) -> bool:
        """The model as loaded transcribes already (Whisper): it is a candidate for the kept epoch."""
        return self.head == "whisper"

    @torch.inference_mode()
    def evaluate(self, model, loader, to_device, gather=None) -> dict[str, float]:
        model.eval()
        counts = []
        for x, y in loader:
            x, y = to_device(x, y)
            hyps = self.transcribe(model, x)
            refs = [self.text_of(t) for t in y]
            e = error_rates(refs, hyps)
            counts += list(zip(e["word_errors"], e["words"], e["char_errors"], e["chars"]))
        c = torch.tensor(counts or [[0, 0, 0, 0]], dtype=torch.float64)
        if gather is not None:
            c = gather(c)
        s = c.sum(0)
        return {"val_wer": float(s[0] / max(1, s[1])), "val_cer": float(s[2] / max(1, s[3])),
                "_word_errors": c[:, 0].tolist()}  # per utterance, for the paired test in :meth:`beats`

    @classmethod
    def selection_score(cls, row):
        return (-row.get("val_wer", 1e9), -row.get("val_cer", 1e9))

    @classmethod
    def beats(cls, row: dict, best: dict) -> bool:
        """A trained epoch replaces the model as loaded only when its per-utterance word errors are lower by a
        one-sided paired Wilcoxon test (p < 0.05): a few validation clips cannot hand back a worse recogniser on
        the strength of chance (a raw minimum over 10 clips once kept an epoch with 2.4× the test WER). Between
        trained epochs the lower WER wins."""
        if not super().beats(row, best):
            return False
        if best.get("epoch") != 0 or "_word_errors" not in row or "_word_errors" not in best:
            return True
        return paired_lower(row["_word_errors"], best["_word_errors"])

    def transcribe(self, model, x: dict) -> list[str]:
        """Transcripts of one batch (greedy, or the lexicon beam), normalised as the references are."""
        if self.beam is not None:
            out = model(x)
            return [normalise(self.beam(lp[: int(n)]), self.mode) for lp, n in zip(out["log_probs"], out["lengths"])]
        seqs = model.greedy(x)
        if self.head == "ctc":
            return [normalise(self.vocab.decode_greedy(s.cpu().numpy()), self.mode) for s in seqs]
        return [normalise(self.tokenizer.decode(s.tolist(), skip_special_tokens=True), self.mode) for s in seqs]

    def text_of(self, target: torch.Tensor) -> str:
        t = target[target >= 0].tolist()
        if self.head == "ctc":
            return self.vocab.decode(t)
        return normalise(self.tokenizer.decode([i for i in t if i != WHISPER_EOT], skip_special_tokens=True), self.mode)

    @torch.inference_mode()
    def infer(self, model, dataset, batch_size: int, device, progress=None, **options) -> list[str]:
        """Transcripts of ``dataset`` in its order (batches of similar length, shortest first)."""
        model.eval().to(device)
        return infer_each(lambda x: self.transcribe(model, x), dataset, min(batch_size, 8), device, progress,
                          options.get("precision", "no"))

    def run_batch(self, model, batch) -> list[str]:
        return self.transcribe(model, batch)

    # -- scoring ------------------------------------------------------------------------------------------
    prediction_columns = ("input", "reference", "hypothesis", "word_errors", "words", "char_errors", "chars")

    def metrics(self, outputs, items, labels) -> dict[str, Any]:
        return self._metrics(items, *self._rates(outputs, items))

    def prediction_rows(self, outputs, items, labels) -> list[dict]:
        """One row per utterance: reference, hypothesis and their edit counts."""
        refs, e = self._rates(outputs, items)
        return [dict(zip(self.prediction_columns, row)) for row in
                zip(items.inputs, refs, outputs, e["word_errors"], e["words"], e["char_errors"], e["chars"])]

    def _rates(self, outputs, items) -> tuple[list[str], dict]:
        refs = [normalise(self.transcripts.get(p, ""), self.mode) for p in items.inputs]
        return refs, error_rates(refs, list(outputs))

    def _metrics(self, items, refs: list[str], e: dict) -> dict[str, Any]:
        out = {"wer": e["wer"], "cer": e["cer"], "n": len(refs), "words": int(sum(e["words"])),
               "normalise": self.mode, "head": self.head}
        by: dict[str, list[int]] = {}
        for p, we, w in zip(items.inputs, e["word_errors"], e["words"]):
            if p in self.groups:
                g = by.setdefault(self.groups[p], [0, 0])
                g[0] += we
                g[1] += w
        if by:
            out["per_group"] = {g: {"wer": v[0] / max(1, v[1]), "words": v[1]} for g, v in sorted(by.items())}
        return out

    @classmethod
    def item_values(cls, run_dir, labels) -> dict[str, np.ndarray]:
        """Per utterance, its edits over the mean reference length: their mean is the corpus WER (CER)."""
        rows = read_predictions(run_dir)
        if not rows:
            return {}
        out = {}
        for m, (err, size) in {"wer": ("word_errors", "words"), "cer": ("char_errors", "chars")}.items():
            e = np.array([float(r[err]) for r in rows])
            n = np.array([float(r[size]) for r in rows])
            out[m] = e / max(n.mean(), 1e-9)
        return out

    @classmethod
    def summary(cls, m):
        return f"WER {m['wer']:.1%}, CER {m['cer']:.1%} on {m['n']} utterances ({m['words']} words; {m['normalise']} normalisation)"

    def decode(self, outputs, labels, topk=3):
        return [{"transcript": h} for h in outputs]

    def collate(self, backbone, xs):
        return collate_speech([(x, []) for x in xs])[0]

    def app_output(self, gr, labels):
        return gr.Textbox(label="transcript")

    def app_value(self, prediction, given):
        return prediction["transcript"] or "(nothing heard)"

    def check_request(self, x, data_config) -> None:
        """A served clip longer than the encoder's window is refused with its length (not a failure in its batch)."""
        limit = data_config.get("max_seconds")
        seconds = x.shape[-1] / (SAMPLE_RATE / 160 if data_config.get("n_mels") else SAMPLE_RATE)
        if limit and seconds > limit:
            raise DataError(f"The clip is {seconds:.1f} s; this model's encoder takes at most {limit:.0f} s",
                            f"a clip of at most {limit:.0f} s", "Split the recording into shorter clips")

    def per_item(self, outputs) -> list:
        return list(outputs)

    def report_sections(self, run_dir, m, meta, modality):
        return sections(run_dir, m, read_predictions(run_dir), modality)

    output_help = ("log_probs (1 × frames × symbols) over 'labels' (index 0 is the CTC blank, '|' the word separator): "
                   "greedy decoding takes the argmax per frame, merges repeats and drops blanks")

    def contract(self, data_config) -> dict[str, Any]:
        dc = data_config
        return {**input_contract(dc), "clip": "the whole clip, any length (mono, resampled)",
                "layout": "1×n_mels×frames, one clip per call" if dc["n_mels"] else "1×samples, one clip per call"}

    def export(self, pred, fmt, out_dir, meta, check_inputs):
        return export(pred, fmt, out_dir, meta, check_inputs)


def _decoders(head: str, labels: list[str], data_config: dict | None, backbone) -> tuple:
    """(Whisper's tokenizer, the lexicon beam of ``--decode lexicon``): what a run decodes with, built for that run."""
    dc = data_config or {}
    beam = None
    if dc.get("decode") == "lexicon":
        beam = LexiconBeam(labels, dc["lexicon"], dc.get("lm"))
    return (backbone.tokenizer if head == "whisper" else None), beam


def resolve_head(cfg, backbone) -> str:
    """``--head ctc|whisper``; anything else: Whisper's decoder where the backbone has one, else CTC."""
    whisper = hasattr(backbone, "can_transcribe") and backbone.can_transcribe()
    if cfg.head in HEADS:
        if cfg.head == "whisper" and not whisper:
            raise ConfigError(f"--head whisper needs a Whisper backbone with its decoder and tokenizer ({cfg.backbone} "
                              "has none)", "packaged:whisper_base or hf:openai/whisper-*", "Use --head ctc for this encoder")
        return cfg.head
    return "whisper" if whisper else "ctc"


def _transform(ops: SpeechOps):
    return ImageTransform(AudioDecode(), ops)


def read_predictions(run_dir) -> list[dict]:
    path = Path(run_dir) / rf.PREDICTIONS
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))

