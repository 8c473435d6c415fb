"""What serving runs per batch: the saved model as loaded vs ``Predictor.fast_model()`` (BatchNorm folded
into the convolutions, channels-last), on a packaged-Lite0 probe run of hymenoptera, batch 1 and 16.

    python bench/serve_forward.py [--reps 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _common import HYM  # noqa: E402


def per_batch_ms(model, x: torch.Tensor, reps: int) -> float:
    with torch.inference_mode():
        model(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            model(x)
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    import transferkit as tk

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = tk.fit(str(HYM), strategy="linear-probe", output=f"{tmp}/runs", cache_dir=f"{tmp}/cache")
        pred = tk.load(run.path)
        size = pred.meta["data_config"]["input_size"]
        fast = pred.fast_model()
        print(f"packaged:efficientnet_lite0 probe run, {size[-1]} px, {torch.get_num_threads()} threads")
        print("| batch | as loaded (ms) | fast_model (ms) | speed-up | max |Δlogit| |")
        print("| --- | --- | --- | --- | --- |")
        for batch in (1, 16):
            x = torch.randn(batch, *size)
            xl = x.contiguous(memory_format=torch.channels_last)
            plain = per_batch_ms(pred.model, x, a.reps)
            quick = per_batch_ms(fast, xl, a.reps)
            with torch.inference_mode():
                diff = (pred.model(x) - fast(xl)).abs().max().item()
            print(f"| {batch} | {plain:.1f} | {quick:.1f} | {plain / quick:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
