"""Audio: a whole linear-probe run vs one bare forward pass over the same clips, per offline backbone.

The bare pass is a DataLoader over the same clips (decoded, resampled, cropped and turned into the
same log-mel per item) and the backbone's forward pass, timed after a warm-up batch. The transferkit
run also scans (decodes) every file, fits the logistic head with cross-validation, evaluates on the
held-out speaker and writes the run folder. For Whisper a last row times transformers' encoder on
its standard 30 s window, which is what running on the clip's own length saves.

    python bench/audio_probe_vs_forward.py [--per-digit 60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
SPEAKERS = r"^\d+_([a-z]+)_"


def subset(folder: Path, per_digit: int) -> Path:
    """Class folders of symlinks: the first ``per_digit`` clips of each digit (all speakers)."""
    for d in range(10):
        (folder / str(d)).mkdir(parents=True)
        clips = sorted(FSDD.glob(f"{d}_*.wav"), key=lambda p: (int(p.stem.split("_")[2]), p.name))[:per_digit]
        for p in clips:
            (folder / str(d) / p.name).symlink_to(p)
    return folder


def bare_pass(model, loader) -> tuple[float, int]:
    n = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
            n += len(x)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-digit", type=int, default=60)
    args = ap.parse_args()
    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.config import RunConfig
    from transferkit.modalities import get_modality

    audio = get_modality("audio")
    with tempfile.TemporaryDirectory() as tmp:
        root = subset(Path(tmp) / "fsdd", args.per_digit)
        data = audio.data(root, RunConfig(), val_fraction=0.0, test_fraction=0.0).setup()
        items = data.splits_["train"]
        for p in items.inputs:  # same page cache for every contender
            open(p, "rb").read()
        cfg = RunConfig(clip_seconds=0.75, augment="none")
        print(f"{len(items)} FSDD clips (0.75 s clips, 16 kHz), {torch.get_num_threads()} threads")
        print("| backbone | what | seconds | clips/s | ratio to bare forward | held-out speaker accuracy |")
        print("| --- | --- | --- | --- | --- | --- |")
        for spec in ("packaged:whisper_base", "packaged:efficientnet_lite0"):
            b = create_backbone(spec).eval()
            _, tf, dc = audio.pipeline(b, cfg)
            ds = audio.dataset(b, items, tf)  # no cache: decoded per item, as a plain loop does
            loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=min(2, os.cpu_count() or 1))
            if dc["image_size"]:
                b.to(memory_format=torch.channels_last)
            with torch.inference_mode():
                b(audio.example_input(dc))  # warm-up
            bare, n = bare_pass(b, loader)
            rows = [("bare forward pass (DataLoader + model)", bare, None)]
            for name in ("transferkit linear-probe run, cold feature cache", "transferkit linear-probe run, features cached"):
                t0 = time.perf_counter()
                run = tk.fit(str(root), backbone=spec, strategy="linear-probe", group_by=SPEAKERS, clip_seconds=0.75, val_fraction=0.0,
                             output=f"{tmp}/runs", cache_dir=f"{tmp}/cache")
                rows.append((name, time.perf_counter() - t0, run.accuracy))
            if not dc["image_size"]:  # Whisper: transformers' encoder on its 30 s window, over a few batches
                from transformers.models.whisper.modeling_whisper import WhisperEncoder  # noqa: F401

                x = torch.randn(8, 80, 3000)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    for _ in range(2):
                        b.model(x)
                per_clip = (time.perf_counter() - t0) / 16
                rows.append(("bare forward, transformers' encoder on the 30 s window", per_clip * n, None))
            for name, secs, acc in rows:
                print(f"| {spec} | {name} | {secs:.1f} | {n / secs:.1f} | {secs / bare:.2f} | "
                      f"{'' if acc is None else f'{acc:.1%}'} |")


if __name__ == "__main__":
    main()
