"""Unsupervised domain adaptation on Office-Caltech10's six directed pairs (amazon, webcam, dslr) with a backbone
(default the packaged EfficientNet-Lite0): target accuracy per method, mean ± std over seeds, wall time per run,
through ``compare --target`` (every pair's source split the same for all methods; target labels only score).

Feature-level methods and AdaBN run on the linear probe, with the oracle (a probe trained on the target's labels,
2-fold cross-fitting); end-to-end methods fine-tune. Then the cost of each feature-level method's head fit
against the plain probe's, on the same cached features, in this one run.

Fine-tuning rows train with the adaptation recipe (adaptation.RECIPE: 10 epochs of 30 steps) unless ``--epochs``
/ ``--epoch-steps`` say otherwise; each records, per epoch, the source val accuracy, the label-free target scores
(DEV, SND) and the target accuracy, so the table of epoch choices says which criterion picks the epoch the target
labels would.

    python bench/domain_adaptation.py [--seeds 3] [--e2e-seeds 1] [--image-size 128] [--pairs A:W,D:W] [--out DIR]
    python bench/domain_adaptation.py --costs-only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "office_caltech10"
DOMAINS = {"A": "amazon", "W": "webcam", "D": "dslr"}
PAIRS = "A:W,A:D,W:A,W:D,D:A,D:W"
E2E_PAIRS = "D:W,W:D,D:A,W:A,A:W,A:D"
PROBE_METHODS = ["none", "coral", "sa", "ot", "adabn", "mcc", "auto", "oracle"]
E2E_METHODS = ["none", "dann", "cdan", "mcc", "self-train"]


def head_costs(source: Path, target: Path, backbone: str) -> dict[str, float]:
    """Seconds to fit the probe head on cached features: plain, and each feature-level method (median of 3)."""
    import numpy as np

    from transferkit.adaptation._feature_level import fit_adapted_probe
    from transferkit.backbones import create_backbone
    from transferkit.config import resolve_config
    from transferkit.data import ImageFolderData
    from transferkit.features import extract_features
    from transferkit.modalities import get_modality
    from transferkit.tasks import get_task

    cfg = resolve_config({"data": str(source), "backbone": backbone})
    bb = create_backbone(backbone)
    modality, task = get_modality("image"), get_task("classify").for_run(cfg, None)
    _, eval_tf, dc = modality.pipeline(bb, cfg)
    src = ImageFolderData(source).setup()
    tgt = ImageFolderData(target, val_fraction=0, test_fraction=0).setup()
    fs = extract_features(bb, src.splits_["train"], eval_tf, preprocessing=modality.feature_key(eval_tf, dc))
    ft = extract_features(bb, tgt.splits_["train"], eval_tf, preprocessing=modality.feature_key(eval_tf, dc))
    ys = np.asarray(src.splits_["train"].labels)
    out = {}
    for method in ["none", "coral", "sa", "ot"]:
        times = []
        for _ in range(3):
            model = task.build_model(bb, {"head": "linear", "labels": src.classes_})
            t0 = time.perf_counter()
            if method == "none":
                task.fit_probe(model, fs, ys, cfg)
            else:
                fit_adapted_probe(method, task, model, fs, ys, ft, cfg)
            times.append(time.perf_counter() - t0)
        out[method] = sorted(times)[1]
    return out


def main() -> None:
    from transferkit.adapt_compare import compare_adaptation

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--e2e-seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning rows (default: the recipe's)")
    ap.add_argument("--epoch-steps", type=int, default=None, help="fine-tuning rows (default: the recipe's)")
    ap.add_argument("--image-size", type=int, default=None, help="every row (default: the backbone's)")
    ap.add_argument("--probe-methods", default=",".join(PROBE_METHODS))
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--e2e-pairs", default=E2E_PAIRS, help="fine-tuning rows: cheapest sources first")
    ap.add_argument("--backbone", default="packaged:efficientnet_lite0")
    ap.add_argument("--out", default="runs/office-caltech10")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-probe", action="store_true")
    ap.add_argument("--skip-costs", action="store_true")
    ap.add_argument("--e2e-methods", default=",".join(E2E_METHODS))
    ap.add_argument("--costs-only", action="store_true", help="only the head-fit cost of each feature-level method")
    a = ap.parse_args()
    if a.costs_only:
        return print_costs(a.backbone)
    table: dict[str, dict[str, str]] = {}
    picks: list[dict] = []  # per pair and strategy: the label-free choice against the target-label oracle's
    size = {"image_size": a.image_size} if a.image_size else {}
    phases = [] if a.skip_probe else [("linear-probe", a.probe_methods.split(","), a.seeds, size, a.pairs)]
    if not a.skip_e2e:
        extra = {k: v for k, v in (("epochs", a.epochs), ("epoch_steps", a.epoch_steps),
                                   ("image_size", a.image_size)) if v is not None}
        phases.append(("finetune", a.e2e_methods.split(","), a.e2e_seeds, extra, a.e2e_pairs))
    for strategy, methods, seeds, extra, pairs in phases:
        for pair in pairs.split(","):
            s, t = pair.split(":")
            res = compare_adaptation(str(OFFICE / DOMAINS[s]), str(OFFICE / DOMAINS[t]), [strategy], methods,
                                     seeds=seeds, output=a.out, name=f"{s}2{t}-{strategy}", resume=True,
                                     backbone=a.backbone, **extra)
            for r in res["rows"]:
                cell = f"{r['target_accuracy_mean']:.3f} ± {r['target_accuracy_std']:.3f} ({r['seconds_mean']:.0f} s)"
                table.setdefault(r["strategy"], {})[f"{s}→{t}"] = cell
            print(json.dumps({"pair": pair, "strategy": strategy, "rows": {r["strategy"]: round(r["target_accuracy_mean"], 4)
                                                                         for r in res["rows"]}}), flush=True)
            picks.append(label_free_pick(pair, strategy, res))
    cols = [p.replace(":", "→") for p in dict.fromkeys(a.pairs.split(",") + a.e2e_pairs.split(","))]
    print(f"\ntarget accuracy, mean ± std over seeds (wall time per run); {a.backbone}; "
          f"probe rows {a.seeds} seed(s), fine-tune rows {a.e2e_seeds} seed(s), {extra if not a.skip_e2e else ''}")
    print("| method | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells.get(c, "—") for c in cols) + " |")
    print_picks(picks)
    if not a.skip_e2e:
        print_epoch_choices(Path(a.out), a.e2e_pairs)
        print_method_choices(Path(a.out), a.e2e_pairs)
    if not a.skip_probe and not a.skip_costs:
        print_costs(a.backbone)


def label_free_pick(pair: str, strategy: str, res: dict) -> dict:
    """The line the label-free criterion recommends beside the one the target labels say is best (the oracle's
    choice among the same lines), and what the recommendation costs in target accuracy."""
    rows = [r for r in res["rows"] if "target_snd_mean" in r and not r["chooses_itself"]]
    acc = {r["strategy"]: r["target_accuracy_mean"] for r in rows}
    best = max(acc.values())
    rec = (res.get("recommended") or {}).get("strategy")
    return {"pair": pair, "strategy": strategy, "recommended": rec, "best": [k for k, v in acc.items() if v == best],
            "regret": best - acc.get(rec, float("nan")),
            "gain": acc.get(rec, float("nan")) - acc.get(f"{strategy} + none", float("nan"))}


def print_picks(picks: list[dict]) -> None:
    if not picks:
        return
    print("\nlabel-free choice (SND of the target predictions) against the target-label oracle's choice:")
    print("| pair | strategy | SND picks | best by target labels | accuracy below the best | gain over none |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p in picks:
        print(f"| {p['pair'].replace(':', '→')} | {p['strategy']} | {p['recommended']} | {', '.join(p['best'])} | "
              f"{p['regret']:.3f} | {p['gain']:+.3f} |")
    for strategy in dict.fromkeys(p["strategy"] for p in picks):
        own = [p for p in picks if p["strategy"] == strategy]
        hits = sum(p["recommended"] in p["best"] for p in own)
        print(f"{strategy}: SND's choice is the oracle's on {hits}/{len(own)} pairs; mean gain over none "
              f"{sum(p['gain'] for p in own) / len(own):+.3f}, mean shortfall from the best "
              f"{sum(p['regret'] for p in own) / len(own):.3f}")


def print_epoch_choices(out: Path, pairs: str) -> None:
    """Per fine-tuning run: the target accuracy of the epoch each rule keeps (source val accuracy, the lowest DEV,
    the highest SND, the last) against the best epoch by target labels (the oracle no user has)."""
    import csv

    rules = {"dev": ("target_dev", min), "snd": ("target_snd", max)}  # val: the epoch the run kept (its default)
    hits = {r: 0 for r in ["val", *rules, "last"]}
    loss = {r: 0.0 for r in hits}
    n = 0
    print("\nepoch choices on fine-tuning runs: target accuracy of the kept epoch (oracle: best epoch by target labels)")
    print("| run | " + " | ".join(hits) + " | oracle |")
    print("| --- |" + " --- |" * (len(hits) + 1))
    for pair in pairs.split(","):
        s, t = pair.split(":")
        for path in sorted((out / f"{s}2{t}-finetune").glob("**/history.csv")):
            rows = [r for r in csv.DictReader(open(path)) if r.get("target_acc")]
            if not rows:
                continue
            acc = [float(r["target_acc"]) for r in rows]
            picked = {name: acc[rows.index(pick(rows, key=lambda r, k=k: float(r[k])))]
                      for name, (k, pick) in rules.items() if rows[0].get(k)}
            picked["last"] = acc[-1]
            picked["val"] = next((a_ for a_, r in zip(acc, rows) if r.get("kept") == "1"), acc[-1])
            best = max(acc)
            n += 1
            for name, v in picked.items():
                hits[name] += v == best
                loss[name] += best - v
            label = f"{s}→{t} {path.parent.relative_to(out / f'{s}2{t}-finetune')}"
            print(f"| {label} | " + " | ".join(f"{picked.get(r, float('nan')):.3f}" for r in hits) + f" | {best:.3f} |")
    if n:
        print(" · ".join(f"{r}: the oracle's epoch on {hits[r]}/{n} runs, {loss[r] / n:.3f} below it on average"
                         for r in hits))


def print_method_choices(out: Path, pairs: str) -> None:
    """Per pair of the fine-tuning rows: the method ``--adapt auto`` keeps (the lowest DEV of the kept epoch, mean
    over seeds), the one the highest SND would keep, and the best by target accuracy (the oracle's)."""
    import csv
    from collections import defaultdict

    print("\nmethod choices on fine-tuning rows (kept epoch's DEV and SND, mean over seeds) against the target labels:")
    print("| pair | DEV keeps | SND keeps | best by target labels | DEV's shortfall | DEV's gain over none |")
    print("| --- | --- | --- | --- | --- | --- |")
    hits, n = {"dev": 0, "snd": 0}, 0
    for pair in pairs.split(","):
        s, t = pair.split(":")
        per = defaultdict(list)
        for path in sorted((out / f"{s}2{t}-finetune").glob("**/finetune-*-seed*/history.csv")):
            kept = next((r for r in csv.DictReader(open(path)) if r.get("kept") == "1"), None)
            metrics = json.loads((path.parent / "metrics.json").read_text()) if (path.parent / "metrics.json").is_file() else None
            if kept is None or metrics is None or not kept.get("target_dev"):
                continue
            per[metrics["adaptation"]["method"]].append(
                (float(kept["target_dev"]), float(kept["target_snd"]), metrics["adaptation"]["accuracy"]))
        if len(per) < 2:
            continue
        mean = {m: [sum(v[i] for v in vals) / len(vals) for i in range(3)] for m, vals in per.items()}
        dev = min(mean, key=lambda m: mean[m][0])
        snd = max(mean, key=lambda m: mean[m][1])
        top = max(v[2] for v in mean.values())
        best = [m for m, v in mean.items() if v[2] == top]
        n += 1
        hits["dev"] += dev in best
        hits["snd"] += snd in best
        base = mean.get("none", [0, 0, float("nan")])[2]
        print(f"| {s}→{t} | {dev} | {snd} | {', '.join(best)} | {top - mean[dev][2]:.3f} | {mean[dev][2] - base:+.3f} |")
    if n:
        print(f"DEV's choice is the oracle's on {hits['dev']}/{n} pairs, SND's on {hits['snd']}/{n}")


def print_costs(backbone: str) -> None:
    costs = head_costs(OFFICE / "amazon", OFFICE / "webcam", backbone)
    print("\nhead fit on cached features, amazon → webcam (median of 3, seconds; ratio to the plain probe):")
    for m, sec in costs.items():
        print(f"  {m:6} {sec:6.2f} s  {sec / costs['none']:5.2f}×")


if __name__ == "__main__":
    main()
