"""Benchmark: 1 process vs N worker processes (DDP on gloo) on this machine, for the linear probe's feature
extraction and for fine-tuning. Threads are split so the processes do not fight over the cores (one process:
all cores; N processes: cores / N each). Both are timed inside the workers, after start-up, with the same
images, model, image size and global batch.

    python bench/distributed_scaling.py [--processes 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, os.path.dirname(__file__))
from _common import HYM, hymenoptera_items  # noqa: E402


def extraction(size: int, threads: int | None = None) -> dict:
    """Pooled Lite0 features of every hymenoptera image, shared by the processes; seconds after a barrier."""
    import torch

    from transferkit import _dist
    from transferkit._launch import join_process_group
    from transferkit.backbones import create_backbone
    from transferkit.data import ImageDataset, Items, eval_transform, resolve_data_config
    from transferkit.features import infer_logits

    join_process_group(cpu=True)
    if threads:
        torch.set_num_threads(threads)
    train, _ = hymenoptera_items("train")
    val, _ = hymenoptera_items("val")
    items = Items(train.inputs + val.inputs, train.labels + val.labels)
    b = create_backbone("packaged:efficientnet_lite0").eval()
    tf = eval_transform(resolve_data_config({**b.pretrained_cfg, "input_size": (3, size, size)}))
    ds = ImageDataset(items, tf)
    infer_logits(b, torch.utils.data.Subset(ds, range(8)), 8, workers=0)  # warm-up
    _dist.barrier()
    t0 = time.perf_counter()
    feats = infer_logits(b, ds, 32, workers=0, shard=True)
    seconds = time.perf_counter() - t0
    return {"images": len(feats), "seconds": seconds, "threads": torch.get_num_threads()}


def finetune(processes: int, size: int, epochs: int, threads: int) -> dict:
    """A whole fine-tuning run; the speed of its last epoch (the first one warms up)."""
    import torch

    import transferkit as tk

    torch.set_num_threads(threads)  # the parent's: worker processes set their own (cores / processes)
    with tempfile.TemporaryDirectory() as out:
        run = tk.fit(str(HYM), backbone="packaged:efficientnet_lite0", strategy="finetune", epochs=epochs,
                     batch_size=16, image_size=size, workers=0, output=out, processes=processes)
        last = run.history[-1]
        return {"images": run.metrics["n_train"], "seconds": last["seconds"], "accuracy": run.metrics["accuracy"]}


def main() -> None:
    from transferkit._launch import launch

    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    n, each = args.processes, max(1, cores // args.processes)
    print(f"{cores} cores; Lite0 at {args.size} px; {n} processes get {each} thread(s) each")
    rows = {}
    for name, run in (("probe features", lambda p, t: extraction(args.size, t) if p == 1 else
                       launch(extraction, p, args.size)),
                      (f"fine-tune epoch {args.epochs}", lambda p, t: finetune(p, args.size, args.epochs, t))):
        rows[name] = (run(1, each), run(1, cores), run(n, each))
    print(f"{'images/s':<24}{f'1 proc × {each} thr':>16}{f'1 proc × {cores} thr':>16}{f'{n} proc × {each} thr':>16}"
          f"{'scaling eff.':>14}{'vs 1 proc':>11}")
    for name, (base, whole, many) in rows.items():
        a, b, c = (r["images"] / r["seconds"] for r in (base, whole, many))
        print(f"{name:<24}{a:>16.1f}{b:>16.1f}{c:>16.1f}{c / (n * a):>14.0%}{c / b:>10.2f}×")
    ft = rows[f"fine-tune epoch {args.epochs}"]
    print(f"fine-tuned accuracy: 1 process {ft[1]['accuracy']:.3f}, {n} processes {ft[2]['accuracy']:.3f}")
    print(f"scaling efficiency: {n}-process images/s over {n} × one process with the same threads each; "
          f"'vs 1 proc': over one process using all {cores} cores (what this machine gives without DDP)")


if __name__ == "__main__":
    main()
