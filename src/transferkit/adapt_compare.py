"""Compare domain-adaptation methods on one source split and one target, with paired seeds: target accuracy
per method, the gain over the same strategy's source-only run with its interval over seeds × target inputs,
NEGATIVE TRANSFER where adapting hurts beyond noise, and an oracle trained on the target's own labels."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import _dist
from . import _runfolder as rf
from ._launch import across_processes
from .adaptation import METHODS, compatible, get_method, pairings, read_target, target_outcomes
from .compare import close_comparison, open_comparison, paired_test, run_grid, transfer_warnings
from .config import resolve_config
from .errors import ConfigError
from .evaluation import crossed_interval
from .modalities import modality_of
from .strategies import get_strategy

log = logging.getLogger("transferkit")
ORACLE = "oracle"
CRITERION = "soft neighbourhood density of the target predictions (Saito et al., ICCV 2021; higher is better)"
ORACLE_NOTE = "trained on the target's labels (2-fold cross-fitting): not achievable without them"


def plan(strategies: list[str], methods: list[str], settings: dict) -> dict[str, dict]:
    """Every (strategy, method) pair that can run, as compare variants; refuses a method no strategy can run."""
    unknown = [m for m in methods if m not in METHODS and m != ORACLE]
    if unknown:
        raise ConfigError(f"Unknown --adapt method(s) {', '.join(unknown)}", f"some of {', '.join(METHODS)}, {ORACLE}")
    objs = {s: get_strategy(resolve_config({**settings, "strategy": s})) for s in strategies}
    variants = {f"{s} + {m}": {"strategy": s, "adapt": m} for s in strategies for m in methods
                if m != ORACLE and compatible(objs[s], m)}
    lonely = [m for m in methods if m != ORACLE and not any(compatible(o, m) for o in objs.values())]
    if lonely:
        raise ConfigError(f"No strategy in {','.join(strategies)} can run --adapt {','.join(lonely)}",
                          pairings(), "Add the strategy to --strategies")
    return variants


@across_processes
def compare_adaptation(data, target: str, strategies: list[str], methods: list[str], seeds: int = 3,
                       output: str | Path = "runs", name: str | None = None, first_seed: int = 0,
                       resume: bool = False, **settings) -> dict[str, Any]:
    """Every compatible (strategy, method) with every seed; ``oracle`` among ``methods`` adds, per strategy, a
    run trained on the labelled target (two folds, each scored on the other). Writes compare.json and a report."""
    settings = {**settings, "target": str(Path(target).resolve())}
    variants = plan(strategies, methods, settings)
    read: dict[str, Any] = {}

    def prepare(data) -> None:  # the target, once: every run adapts to these; checked before any folder is made
        read["cfg"] = resolve_config({**settings, "data": data.location})
        read["target"] = read_target(settings["target"], read["cfg"], modality_of(data), data)
        if ORACLE in methods:
            check_oracle(read["target"], data.classes_)  # the oracle's runs come last: said now, not then

    data, out_dir = open_comparison(data, settings, output, name, resume, prefix="adapt", before=prepare)
    cfg, target = read["cfg"], read["target"]
    seed_range = range(first_seed, first_seed + seeds)
    results = run_grid(data, variants, seed_range, out_dir, resume, settings, target_data=target)
    classes = data.classes_
    outcomes = {v: [target_outcomes(r.path, classes) for r, _ in runs] for v, runs in results.items()}
    strategy_of = {v: own["strategy"] for v, own in variants.items()}
    if ORACLE in methods:
        for s in strategies:
            strategy_of[f"{s} {ORACLE}"] = s
            runs, outs = _oracle(data, target, cfg, s, seed_range, out_dir, resume, settings)
            results[f"{s} {ORACLE}"], outcomes[f"{s} {ORACLE}"] = runs, outs
    if not _dist.is_main():
        return _dist.broadcast(None)
    rows = []
    for v, runs in results.items():
        acc = [float(o.mean()) for o in outcomes[v]]
        src = [] if v.endswith(ORACLE) else [r.metrics["accuracy"] for r, _ in runs]  # the oracle's is a target score
        row: dict[str, Any] = {"strategy": v, "target_accuracy": acc, "target_accuracy_mean": float(np.mean(acc)),
                               "target_accuracy_std": float(np.std(acc)), "source_accuracy": src,
                               "source_accuracy_mean": float(np.mean(src)) if src else float("nan"),
                               "source_accuracy_std": float(np.std(src)) if src else float("nan"),
                               "seconds_mean": float(np.mean([t for _, t in runs])),
                               "runs": sorted({str(r.path) for r, _ in runs}),
                               "interval": crossed_interval(np.stack(outcomes[v]))}
        if not v.endswith(ORACLE):  # the label-free criterion, from each run's target predictions
            snd = [r.metrics["adaptation"]["snd"] for r, _ in runs]
            row.update(target_snd=snd, target_snd_mean=float(np.mean(snd)), target_snd_std=float(np.std(snd)),
                       chooses_itself=get_method(variants.get(v, {}).get("adapt") or "none").searches)  # not a candidate
            dev = [r.metrics["adaptation"].get("dev") for r, _ in runs]
            if all(d is not None for d in dev):  # trained lines: their kept model's estimated target loss
                row.update(target_dev=dev, target_dev_mean=float(np.mean(dev)))
        base = f"{strategy_of[v]} + none"
        row["baseline"] = v == base
        if v != base and base in outcomes:
            row["gain"] = _gain(outcomes[v], outcomes[base])
            row["gains"] = {"target_accuracy": row["gain"]}
        rows.append(row)
    n_scored = len(next(iter(outcomes.values()))[0])
    first = next(iter(results.values()))[0][0]
    result = {"title": "Domain adaptation comparison", "data": data.location, "target": settings["target"], "backbone": first.config.backbone,
              "seeds": seeds, "split": "target", "n_eval": n_scored, "rows": rows,
              "metrics": ["target_accuracy", "source_accuracy", "target_snd"], "baseline": "source only (same strategy)",
              "recommended": _recommend(rows),
              "warnings": transfer_warnings(rows, "target accuracy", "source only"), "oracle": ORACLE_NOTE if ORACLE in methods else None}
    return close_comparison(out_dir, result)


def _recommend(rows: list[dict]) -> dict[str, Any] | None:
    """The line a user without target labels would pick: the highest mean SND on the unlabelled target."""
    able = [r for r in rows if "target_snd_mean" in r and np.isfinite(r["target_snd_mean"]) and not r["chooses_itself"]]
    if not able:
        return None
    best = max(able, key=lambda r: r["target_snd_mean"])
    return {"strategy": best["strategy"], "criterion": CRITERION, "target_snd": best["target_snd_mean"]}


def _gain(runs: list[np.ndarray], base: list[np.ndarray]) -> dict[str, Any]:
    """Target accuracy gain over the source-only runs, paired by seed and target input, with McNemar's test."""
    d = np.stack([a - b for a, b in zip(runs, base)])
    return {**crossed_interval(d, centre=float(d.mean())), "mcnemar": paired_test(runs, base)}


def check_oracle(target, classes: list[str]) -> None:
    """The oracle trains on half the labelled target and scores the other half: every target class needs two
    labelled inputs. Said before the comparison starts, not when its last runs fail."""
    labels = [lab for lab in target.items.labels if lab is not None and lab >= 0]
    if not labels:
        raise ConfigError("--methods oracle needs target labels; the --target inputs have none",
                          "a labelled target (class folders or a label column)", "Leave oracle out of --methods")
    counts = np.bincount(labels, minlength=len(classes))
    short = [f"{classes[c]} ({n})" for c, n in enumerate(counts) if 0 < n < 2]
    if short:
        raise ConfigError(f"--methods oracle splits the labelled target in two, and target class(es) "
                          f"{', '.join(short)} have a single input", "at least 2 labelled target inputs per class",
                          "Add target inputs for those classes, or leave oracle out of --methods")


def _oracle(data, target, cfg, strategy: str, seeds, out_dir: Path, resume: bool, settings: dict):
    """The strategy trained on half the labelled target and scored on the other half, both ways round: every
    labelled target input is predicted by a model that never saw its label."""
    from sklearn.model_selection import StratifiedKFold  # heavy: loaded on first use

    modality = modality_of(data)
    keep = [i for i, lab in enumerate(target.items.labels) if lab >= 0]
    inputs = [target.items.inputs[i] for i in keep]
    labels = np.array([target.items.labels[i] for i in keep])
    column = cfg.path_column if modality.inputs_are_files else cfg.text_column
    own = {k: v for k, v in settings.items() if k not in ("target", "adapt", "val_fraction", "test_fraction")}
    runs, outcomes = [], []
    for seed in seeds:
        folds = StratifiedKFold(2, shuffle=True, random_state=seed).split(inputs, labels)
        right, seconds, first = np.zeros(len(inputs)), 0.0, None
        for k, (train, test) in enumerate(folds):
            in_train = set(train.tolist())
            table = out_dir / "oracle" / f"seed{seed}-fold{k}.csv"
            if _dist.is_main():
                table.parent.mkdir(parents=True, exist_ok=True)
                with open(table, "w", newline="", encoding="utf-8") as fh:
                    w = csv.writer(fh)
                    w.writerow([column, cfg.label_column, "split"])
                    w.writerows([inputs[i], data.classes_[labels[i]], "train" if i in in_train else "test"]
                                for i in range(len(inputs)))
            variant = {"strategy": strategy, "val_fraction": 0.0, "test_fraction": 0.0}
            name = f"{strategy} {ORACLE}{k}"
            (run, t), = run_grid(str(table), {name: variant}, [seed], out_dir, resume, own)[name]
            pred = _predictions(run.path)
            right[test] = [float(pred[inputs[i]] == data.classes_[labels[i]]) for i in test]
            seconds, first = seconds + t, first or run
        runs.append((first, seconds))
        outcomes.append(right)
    return runs, outcomes


def _predictions(run_dir: Path) -> dict[str, str]:
    with open(run_dir / rf.PREDICTIONS, newline="", encoding="utf-8") as fh:
        return {r["input"]: r["pred"] for r in csv.DictReader(fh)}
