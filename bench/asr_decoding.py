"""Greedy vs lexicon-constrained beam search (flashlight-text) for a finished CTC run, on its own test split.

The lexicon is the words of the run's training transcripts (normalised as scored); ``--lm`` adds a KenLM model.

    python bench/asr_decoding.py RUN [--beam 50] [--lm lm.arpa]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import transferkit as tk
    from transferkit.tasks.asr._beam import LexiconBeam
    from transferkit.tasks.asr._text import error_rates, lexicon, normalise

    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--lm", default=None)
    args = ap.parse_args()
    run = Path(args.run)
    splits = json.loads((run / "splits.json").read_text())
    pred = tk.load(run)
    mode = pred.meta["data_config"]["normalise"]
    words = lexicon(splits["train"]["transcripts"], mode)
    refs = [normalise(t, mode) for t in splits["test"]["transcripts"]]
    rows = []
    for name, beam in (("greedy", None), (f"lexicon beam {args.beam} ({len(words)} words"
                                           f"{', KenLM' if args.lm else ''})", LexiconBeam(pred.labels, words, args.lm, args.beam))):
        pred.task.beam = beam
        t0 = time.time()
        hyps = pred.task.infer(pred.model, pred._dataset(splits["test"]["inputs"]), 8, pred.device)
        e = error_rates(refs, hyps)
        rows.append((name, e["wer"], e["cer"], time.time() - t0))
    print(f"{run.name}: {len(refs)} test utterances")
    print("| decoding | WER | CER | seconds |")
    print("| --- | --- | --- | --- |")
    for name, w, c, s in rows:
        print(f"| {name} | {w:.1%} | {c:.1%} | {s:.1f} |")


if __name__ == "__main__":
    main()
