"""Speech recognition speed: CTC fine-tuning of Whisper-base's encoder, transferkit vs a bare PyTorch loop.

On AN4's training speakers (../shared/data/an4, 78 clips once mjgm, mjwl, mmxg and fcaw are held out), all in one
run of this script, every loop over the same clips, model (packaged Whisper-base encoder + a CTC layer), batch
size and optimiser settings:

1. bare loop, random batches (log-mels computed once, padded to the batch's longest clip);
2. bare loop, length-bucketed batches (clips of similar length together);
3. transferkit ``train --task asr --head ctc --strategy finetune`` (its loop: length buckets, cached decoding);
4. the encoder alone on each clip's own length vs on Whisper's 30 s window (inference, clips/s).

Prints utterances/s and the ratios. ``pip install 'transferkit[audio]'``; ``python bench/asr_throughput.py
[--epochs 2] [--batch-size 8]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
from an4_split import TEST, VAL  # noqa: E402  (this folder: the speakers held out of training)

AN4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "an4"
HELD_OUT = TEST | VAL


def train_clips() -> list[tuple[str, str]]:
    spk = {r["file"]: r["speaker"] for r in csv.DictReader(open(AN4 / "speakers_durations.csv"))}
    return [(str(AN4 / r["file"]), r["transcript"]) for r in csv.DictReader(open(AN4 / "metadata.csv"))
            if spk[r["file"]] not in HELD_OUT]


def bare_loop(clips, epochs: int, batch: int, bucketed: bool) -> float:
    """Utterances/s of a plain CTC fine-tuning loop (features computed once, outside the timing)."""
    from transferkit.backbones import create_backbone
    from transferkit.modalities._audio_features import log_mel
    from transferkit.modalities._audio_io import read_audio, to_mono
    from transferkit.tasks.asr._model import CTCModel
    from transferkit.tasks.asr._text import Vocabulary, normalise

    torch.manual_seed(0)
    texts = [normalise(t) for _, t in clips]
    vocab = Vocabulary.build(texts)
    mels = [log_mel(torch.from_numpy(to_mono(*read_audio(p)))) for p, _ in clips]
    targets = [torch.tensor(vocab.encode(t)) for t in texts]
    model = CTCModel(create_backbone("packaged:whisper_base"), len(vocab)).train()
    opt = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": 5e-5},
                             {"params": model.head.parameters(), "lr": 1e-3}])
    rng = random.Random(0)
    seen, t0 = 0, time.time()
    for _ in range(epochs):
        order = list(range(len(clips)))
        rng.shuffle(order)
        if bucketed:
            order.sort(key=lambda i: mels[i].shape[-1])
        batches = [order[i:i + batch] for i in range(0, len(order), batch)]
        rng.shuffle(batches)
        for b in batches:
            width = max(mels[i].shape[-1] for i in b)
            x = torch.stack([torch.nn.functional.pad(mels[i], (0, width - mels[i].shape[-1]), value=float(mels[i].min()))
                             for i in b])
            y = torch.nn.utils.rnn.pad_sequence([targets[i] for i in b], batch_first=True, padding_value=-1)
            out = model({"input": x, "lengths": torch.tensor([mels[i].shape[-1] for i in b])})
            loss = CTCModel.loss(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(b)
    return seen / (time.time() - t0)


def transferkit_loop(clips, epochs: int, batch: int) -> float:
    import transferkit as tk

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "an4.csv"
        with open(table, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "transcript", "split"])
            w.writerows([(p, t, "train") for p, t in clips[:-4]] + [(p, t, "test") for p, t in clips[-4:]])
        run = tk.fit(str(table), task="asr", head="ctc", backbone="packaged:whisper_base", strategy="finetune",
                     epochs=epochs, batch_size=batch, workers=0, output=str(Path(tmp) / "runs"),
                     cache_dir=str(Path(tmp) / "c"))
        return (len(clips) - 4) * epochs / sum(r["seconds"] for r in run.history if r.get("seconds"))


def encoder_lengths(clips) -> tuple[float, float]:
    from transferkit.backbones import create_backbone
    from transferkit.modalities._audio_features import log_mel
    from transferkit.modalities._audio_io import read_audio, to_mono

    enc = create_backbone("packaged:whisper_base").eval()
    mels = [log_mel(torch.from_numpy(to_mono(*read_audio(p))))[None] for p, _ in clips[:24]]
    rates = []
    for window in (0, 3000):
        t0 = time.time()
        with torch.inference_mode():
            for m in mels:
                enc.forward_features(torch.nn.functional.pad(m, (0, max(0, window - m.shape[-1])), value=float(m.min())))
        rates.append(len(mels) / (time.time() - t0))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    clips = train_clips()
    print(f"{len(clips)} AN4 training clips, batch {args.batch_size}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads")
    rnd = bare_loop(clips, args.epochs, args.batch_size, bucketed=False)
    bkt = bare_loop(clips, args.epochs, args.batch_size, bucketed=True)
    tk_rate = transferkit_loop(clips, args.epochs, args.batch_size)
    own, window = encoder_lengths(clips)
    print("| loop | utterances/s | ratio |")
    print("| --- | --- | --- |")
    print(f"| bare PyTorch, random batches | {rnd:.2f} | 1.00 |")
    print(f"| bare PyTorch, length-bucketed batches | {bkt:.2f} | {bkt / rnd:.2f} |")
    print(f"| transferkit (bucketed) | {tk_rate:.2f} | {tk_rate / rnd:.2f} (vs bucketed bare: {tk_rate / bkt:.2f}) |")
    print(f"encoder inference, clips/s: own length {own:.2f}, 30 s window {window:.2f} ({own / window:.1f}× faster)")


if __name__ == "__main__":
    main()
