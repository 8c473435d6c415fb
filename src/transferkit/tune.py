"""Hyperparameter search on Optuna: TPE sampling, pruning fed each epoch's validation score, a search space made
from the plug-ins' declared options (``Option.search``) and overridable with a YAML file. Every trial is an ordinary
run folder trained and scored on train and val only; the best trial's test score is computed once, at the end.

The study lives in the tune folder (an Optuna journal file, which several local processes can share); ``--storage
URL`` puts it in any database Optuna supports, so processes on several machines join one study."""

from __future__ import annotations

import copy
import html
import json
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from . import _runfolder as rf
from .config import load_config_file, options, resolve_config
from .errors import ConfigError, TransferkitError
from .evaluation import plots
from .predict import load
from .strategies import get_strategy
from .tasks import get_task, read_data
from .training import fit
from ._tune_checks import check_same_study, check_spec, fingerprint

log = logging.getLogger("transferkit")
DEFAULT_TRIALS = 20
STUDY_FILE = "study.log"
#: strategies searched when neither --strategies nor the space names them (those the task can train with)
DEFAULT_STRATEGIES = ("linear-probe", "lp-ft", "finetune", "gradual", "frozen")
PRUNERS = ("median", "hyperband", "none")
#: settings never searched: where the run goes and what it reads
NOT_SEARCHED = {"data", "output", "name", "cache_dir", "extra", "budget", "task", "modality", "target", "annotations", "images"}


def _spec(name: str, value, where: str) -> tuple:
    """One search-space entry from a space file: a list (choices), a mapping {low, high, log, int} or a fixed value."""
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: '{name}' has no values to choose from", "a non-empty list of choices",
                              f"List at least one value for {name}, or remove it")
        return ("choice", *value)
    if isinstance(value, dict):
        low, high = value.get("low"), value.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low > high:
            raise ConfigError(f"{where}: '{name}' has low {low!r} and high {high!r}", "numbers with low ≤ high",
                              f"Fix the range of {name}")
        if value.get("log") and low <= 0:
            raise ConfigError(f"{where}: '{name}' is searched on a log scale from {low}", "a positive low for log",
                              f"Raise low, or set log: false for {name}")
        kind = "int" if value.get("int") or options().get(name) and options()[name].kind is int else \
            "log" if value.get("log") else "float"
        return (kind, low, high)
    return ("fixed", value)


def search_space(task, candidates: list[str], fixed: dict[str, Any], space_file: str | Path | None) -> dict[str, tuple]:
    """Name → spec for the study: the declared searches of the run, the task and the candidate strategies, less the
    settings the user fixed, then the space file's entries (dotted keys such as ``run.lr`` or ``lr``)."""
    owners = {"run", f"task {task.name}"} | {f"strategy {s.split(':')[0]}" for s in candidates}
    space = {n: o.search for n, o in options().items() if o.search and o.owner in owners and n not in fixed}
    space["strategy"] = ("choice", *candidates)
    if space_file is not None:
        path = Path(space_file)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--space {path} cannot be read ({type(exc).__name__})", "a YAML file of option: range "
                              "or [choices]", "Check the path and the YAML") from None
        if not isinstance(doc, dict) or not doc:
            raise ConfigError(f"--space {path} is empty or not a mapping", "option: {low, high, log} | [choices] | value",
                              "Add at least one option")
        named: dict[str, str] = {}
        for key, value in doc.items():
            name = str(key).rsplit(".", 1)[-1]
            if name != "strategy" and (name not in options() or name in NOT_SEARCHED):
                raise ConfigError(f"--space {path}: unknown setting '{key}'", "settings of `transferkit train --help` "
                                  "(lr, epochs, strategy …)", "Fix or remove the key")
            if name in named:
                raise ConfigError(f"--space {path} names {name} twice ('{named[name]}' and '{key}')",
                                  "each setting once", f"Keep one of the two entries for {name}")
            named[name] = str(key)
            space[name] = _spec(name, value, f"--space {path}")
            check_spec(name, space[name], f"--space {path}")
    choices = space["strategy"]
    if choices[0] == "fixed":
        space["strategy"] = ("choice", choices[1])
    for s in space["strategy"][1:]:
        get_strategy(resolve_config({"strategy": s}))  # unknown names fail before any trial
    if not any(_varies(spec) for s in space["strategy"][1:] for spec in _applying(space, s).values()):
        raise ConfigError("The search space has nothing to search (every setting is fixed)", "at least one range or "
                          "list of several choices", "Remove some flags, or widen --space")
    return space


def _varies(spec: tuple) -> bool:
    return spec[0] in ("log", "float", "int") and spec[1] != spec[2] or spec[0] == "choice" and len(set(spec[1:])) > 1


def _applying(space: dict[str, tuple], strategy_name: str) -> dict[str, tuple]:
    """The entries of ``space`` a trial of this strategy reads: the strategy itself, its own options, and the
    training options only where something trains by the loop (a probe fitted on cached features reads no learning
    rate, epochs or loss setting)."""
    strategy = get_strategy(resolve_config({"strategy": strategy_name}))
    own = {o.name for o in type(strategy).options}
    out = {"strategy": space["strategy"]}
    for name, spec in space.items():
        owner = options()[name].owner if name in options() else "run"
        if name == "strategy" or owner.startswith("strategy ") and name not in own:
            continue
        if not owner.startswith("strategy ") and not strategy.trains_backbone and spec[0] != "fixed":
            continue
        out[name] = spec
    return out


def suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    """A trial's settings: the strategy first, then what applies to it (:func:`_applying`)."""
    params = {"strategy": _one(trial, "strategy", space["strategy"])}
    for name, spec in _applying(space, params["strategy"]).items():
        if name != "strategy":
            params[name] = _one(trial, name, spec)
    return params


def _one(trial, name: str, spec: tuple):
    kind, *args = spec
    if kind == "fixed":
        return args[0]
    if kind == "choice":
        return trial.suggest_categorical(name, list(args))
    if kind == "int":
        return trial.suggest_int(name, int(args[0]), int(args[1]))
    return trial.suggest_float(name, float(args[0]), float(args[1]), log=kind == "log")


def _storage(url: str | None, folder: Path):
    import optuna  # optional (tune extra)

    if url is None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / STUDY_FILE)))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - any driver's failure to connect or parse the URL
        raise ConfigError(f"--storage {url} cannot be used ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
                          "an Optuna storage URL that is reachable (sqlite:///path.db, postgresql://…)",
                          "Check the URL and that the database is up, or leave --storage out for a file in the "
                          "tune folder") from None


def _pruner(name: str):
    import optuna  # optional (tune extra)

    if name not in PRUNERS:
        raise ConfigError(f"Unknown --pruner {name!r}", f"one of {', '.join(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def tune(data: str, trials: int | None = None, timeout: float | None = None, output: str | Path = "runs",
         name: str | None = None, resume: bool = False, space: str | Path | None = None,
         candidates: list[str] | None = None, pruner: str = "median", storage: str | None = None, seed: int = 0,
         **settings) -> dict[str, Any]:
    """Search the settings of ``data``'s runs; every trial is a run folder under ``<tune folder>/trials``.

    Returns ``tune.json``'s content: every trial (state, validation score, settings, time), the best trial's
    settings and validation score, and its test metrics (computed once, for it alone).
    """
    try:
        import optuna
    except ImportError:
        raise TransferkitError("transferkit tune needs Optuna", None, "pip install 'transferkit[tune]'") from None
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials {trials} runs nothing", "--trials 1 or more")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout {timeout} leaves no time for a trial", "a number of seconds > 0")
    if resume and not name:
        raise ConfigError("--resume needs the tune folder's --name", "--name NAME (the folder under --output)")
    settings["data"] = str(Path(data).resolve())
    cfg = resolve_config(settings)
    full = read_data(cfg)
    full.setup()
    task = get_task(cfg.task)
    folder = Path(output) / (name or f"tune-{Path(data).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    if folder.exists() and not resume:
        raise ConfigError(f"Tune folder {folder} already exists", "a new --name", "Add trials to it with --resume")
    fixed = {k: v for k, v in settings.items() if v is not None and k not in ("data",)}
    given = fixed.pop("strategy", "auto")
    if given != "auto":  # one strategy: its settings are searched
        candidates = [given]
    able = [s for s in (candidates or DEFAULT_STRATEGIES) if task.supports(get_strategy(resolve_config({"strategy": s})))]
    space_ = search_space(task, able or list(candidates or []), fixed, space)
    pruner_, shared = _pruner(pruner), _storage(storage, folder) if storage else None  # checked before the folder
    folder.mkdir(parents=True, exist_ok=True)
    metric = task.compare_metrics[0] if task.compare_metrics else "accuracy"
    direction = "minimize" if metric in task.lower_is_better else "maximize"
    study = optuna.create_study(study_name=folder.name, storage=shared or _storage(None, folder), direction=direction,
                                pruner=pruner_, load_if_exists=True)
    check_same_study(study, fingerprint(full, fixed, space_), folder)
    study.sampler = optuna.samplers.TPESampler(seed=_sampler_seed(seed, len(study.trials)))
    # trials see train and val only; the held-out split (test, else the given val) is scored once, for the best
    trial_data, full, how = full.for_choosing()
    log.info("tune: %s", how)
    objective = _objective(trial_data, task, space_, fixed, folder, metric)
    log.info("tune: %s on val, %s; space %s", metric, direction, ", ".join(f"{k} {v}" for k, v in space_.items()))
    t0 = time.time()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(objective, n_trials=trials if trials or timeout else DEFAULT_TRIALS, timeout=timeout,
                       catch=(Exception,), gc_after_trial=True)
    except KeyboardInterrupt:  # the finished trials are in the study: summarised, and the search can go on
        result = summarise(study, folder, full, metric, time.time() - t0)
        log.warning("tune interrupted: %d finished trial(s) kept in %s; add trials with `transferkit tune %s --name %s "
                    "--output %s --resume`", result["complete"], folder, data, folder.name, output)
        raise
    return summarise(study, folder, full, metric, time.time() - t0)


def _sampler_seed(seed: int, existing: int) -> int:
    """The sampler's seed: ``seed`` for a new study (reproducible); for one that has trials (``--resume``, another
    worker) a seed of this process's own, or it would propose the very settings the study began with."""
    return seed if not existing else (seed * 1_000_003 + existing * 7_919 + os.getpid()) % 2**31


def _objective(data, task, space: dict, fixed: dict, folder: Path, metric: str):
    import optuna  # optional (tune extra)

    def objective(trial) -> float:
        params = suggest(trial, space)
        same = _same_finished(trial, params)
        if same is not None:  # the sampler proposed settings already tried (a probe has few): not trained again
            trial.set_user_attr("same_as", same.number)
            trial.set_user_attr("run", same.user_attrs.get("run"))
            return same.value

        def report(epoch: int, row: dict) -> None:
            score = task.selection_score(row)[0]  # a class method: it reads the row alone
            trial.report(float(score), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        run = fit(copy.copy(data), on_epoch_end=report, **{**fixed, **params, "output": str(folder / "trials"),
                                                           "name": f"trial-{trial.number:03d}",
                                                           "track_group": str(folder)})
        trial.set_user_attr("run", str(run.path))
        trial.set_user_attr("seconds", run.metrics.get("seconds"))
        value = float(run.metrics[metric])
        if not math.isfinite(value):
            raise TransferkitError(f"trial {trial.number} scored {value}", "a finite validation score")
        return value

    return objective


def _same_finished(trial, params: dict):
    import optuna  # optional (tune extra)

    for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.params == {k: v for k, v in params.items() if k in t.params} and set(t.params) == set(params):
            return t
    return None


def summarise(study, folder: Path, data, metric: str, seconds: float) -> dict[str, Any]:
    """tune.json, best_config.yaml and report.html from the study as it stands; the best trial's test score."""
    import optuna  # optional (tune extra)

    states = optuna.trial.TrialState
    rows = [{"number": t.number, "state": t.state.name.lower(), "params": t.params,
             "value": t.value if t.state == states.COMPLETE else None,
             "seconds": t.user_attrs.get("seconds"), "run": t.user_attrs.get("run"),
             "same_as": t.user_attrs.get("same_as"),
             "failure": t.system_attrs.get("fail_reason") if t.state == states.FAIL else None}
            for t in study.get_trials(deepcopy=False)]
    done = [t for t in study.get_trials(deepcopy=False) if t.state == states.COMPLETE]
    out = {"metric": f"val {metric}", "direction": study.direction.name.lower(), "seconds": round(seconds, 1),
           "trials": rows, "complete": len(done), "pruned": sum(r["state"] == "pruned" for r in rows),
           "failed": sum(r["state"] == "fail" for r in rows), "best": None}
    if done:
        best = study.best_trial
        out["best"] = {"number": best.number, "value": best.value, "params": best.params,
                       "run": best.user_attrs.get("run"), "test": _test_score(best.user_attrs.get("run"), data)}
        cfg = load_config_file(Path(best.user_attrs["run"]) / rf.CONFIG)
        for k in ("data", "output", "name", "extra"):
            cfg.pop(k, None)
        (folder / "best_config.yaml").write_text("# the best trial's settings: transferkit train DATA --config this\n"
                                                 + yaml.safe_dump(cfg, sort_keys=False))
    rf.write_json(folder / "tune.json", out)
    _report(study, folder, out)
    return out


def _test_score(run: str | None, data) -> dict | None:
    """The best trial's metrics on the test split (the only test score the search computes)."""
    test = data.splits_["test"]
    if run is None or not len(test):
        return None
    pred = load(run)
    task = pred.task.with_data(data)
    return {"split": "test", **task.metrics(pred.outputs(test.inputs), test, pred.labels)}


def _report(study, folder: Path, out: dict) -> None:
    body = [f"<h1>{html.escape(folder.name)}</h1><p>{out['complete']} complete, {out['pruned']} pruned, "
            f"{out['failed']} failed trial(s); {html.escape(out['metric'])}, {out['direction']}d; "
            f"{out['seconds']:.0f} s in this call.</p>"]
    if out["best"]:
        b = out["best"]
        test = b.get("test") or {}
        shown = {k: v for k, v in test.items() if isinstance(v, (int, float))}
        body += [f"<h2>Best trial: {b['number']}</h2><p>val {b['value']:.4f}; test " +
                 (", ".join(f"{k} {v:.4f}" for k, v in list(shown.items())[:4]) or "—") +
                 f"</p><pre>{html.escape(yaml.safe_dump(b['params'], sort_keys=False))}</pre>"
                 "<p><code>best_config.yaml</code> holds its settings, ready for <code>--config</code>.</p>"]
        body.append(plots.img(_history_png(out), "optimisation history"))
        body.append(plots.img(_importance_png(study), "parameter importances"))
    cells = "".join(f"<tr><td>{r['number']}</td><td>{r['state']}</td><td>{_value(r['value'])}</td>"
                    f"<td>{html.escape(json.dumps(r['params']))}</td></tr>" for r in out["trials"])
    body.append(f"<h2>Trials</h2><table><tr><th>#</th><th>state</th><th>val</th><th>settings</th></tr>{cells}</table>")
    (folder / "report.html").write_text("<!doctype html><html lang=en><head><meta charset=utf-8><title>"
                                        f"{html.escape(folder.name)}</title></head><body>{''.join(body)}</body></html>",
                                        encoding="utf-8")


def _value(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _history_png(out: dict) -> str | None:
    points = [(r["number"], r["value"]) for r in out["trials"] if r["value"] is not None]
    if not points:
        return None
    plt = plots.figure()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    best, run = [], None
    for _, v in points:
        run = v if run is None else (max(run, v) if out["direction"] == "maximize" else min(run, v))
        best.append(run)
    ax.plot([n for n, _ in points], [v for _, v in points], "o", label="trial")
    ax.plot([n for n, _ in points], best, "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(out["metric"])
    ax.legend(fontsize=8)
    ax.set_title("optimisation history")
    return plots.to_png64(fig)


def _importance_png(study) -> str | None:
    import optuna  # optional (tune extra)

    try:
        imp = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):  # too few complete trials, or nothing varied
        return None
    if not imp:
        return None
    plt = plots.figure()
    fig, ax = plt.subplots(figsize=(5, 0.4 * len(imp) + 1.2))
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color="#2e86c1")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("parameter importances")
    return plots.to_png64(fig)


__all__ = ["search_space", "suggest", "tune"]
