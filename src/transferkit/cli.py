"""The ``transferkit`` command: parse, call the library, print. Nothing imports this module."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text
from rich.table import Table

from . import _dist
from ._cli_options import declared_flags, settings_of, with_train_options
from ._printing import print_comparison, print_metrics, print_models, print_predictions, print_sweep, print_tune
from ._runfolder import check_run_dir
from .adapt_compare import compare_adaptation
from .compare import compare as _compare
from .compare import compare_shots
from .config import load_config_file, resolve_config
from .demo import run_demo
from .errors import TransferkitError
from .export import export as _export
from .modalities import data_for
from .predict import evaluate as _evaluate
from .predict import load
from .ranking import rank as _rank
from .reports import write_run_report
from .serve import create_app
from .training import fit, load_run
from .tune import DEFAULT_TRIALS
from .tune import tune as run_tune

try:
    from click import ClickException  # what a typer that depends on click raises
except ImportError:  # typer ≥ 0.2x carries its own copy of click, whose exceptions are TyperExceptions
    ClickException = typer.TyperException

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning with PyTorch: pretrained backbone → new task, measured honestly.")
# Markup off: run names, labels and paths are the user's words, printed as they are ("[x]" stays "[x]").
out = Console(markup=False)
err = Console(stderr=True, markup=False)

O = typer.Option


def _setup_logging(verbose: bool = True) -> None:
    log = logging.getLogger("transferkit")
    if not any(isinstance(h, RichHandler) for h in log.handlers):
        h = RichHandler(console=err, show_path=False, show_time=False, markup=False)
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


@app.command()
@with_train_options
def train(data: Optional[str] = typer.Argument(None, help="image folder, or CSV/TSV/JSONL"),
          config: Optional[Path] = O(None, help="YAML config; flags override it"),
          resume: Optional[Path] = O(None, help="continue an interrupted run folder"),
          processes: Optional[int] = O(None, help="worker processes sharing each batch (DDP; default: one per GPU, "
                                       "else 1); under torchrun / accelerate launch, theirs are used"),
          **options) -> None:
    """Train a model on DATA with a pretrained backbone and a strategy; writes a run folder."""
    _setup_logging()
    if resume is not None:
        given = ([f"DATA {data}"] if data else []) + (["--config"] if config else []) + \
            [f"--{k.replace('_', '-')}" for k in settings_of(options)]
        if given:
            raise TransferkitError(f"--resume continues {resume} with its saved data, split and settings; "
                                   f"{', '.join(given)} cannot change them", "--resume RUN alone",
                                   "Drop the other arguments, or start a new run with them")
        run = fit(resume=resume, processes=processes)
    else:
        if data is None and config is None:
            raise TransferkitError("No data given", "DATA (a folder of images or a CSV/TSV/JSONL file)",
                                   "Run `transferkit train PATH`")
        run = fit(data, config_file=config, processes=processes, **settings_of(options))
    if not _dist.is_main():  # under torchrun / accelerate launch: the main process reports
        return
    print_metrics(out, run.metrics)
    out.print("run folder:", Text(str(run.path), style="bold"))


@app.command()
def evaluate(run: Path = typer.Argument(..., help="a finished run folder"),
             data: Optional[str] = typer.Argument(None, help="new labelled data (default: the run's own eval split)"),
             json_out: bool = O(False, "--json", help="print metrics as JSON")) -> None:
    """Score a finished run on its evaluation split or on new labelled DATA."""
    m = _evaluate(run, data)
    if json_out:
        print(json.dumps(m, indent=1))
    else:
        print_metrics(out, m)


@app.command()
def predict(run: Path = typer.Argument(..., help="a finished run folder"),
            inputs: Optional[List[str]] = typer.Argument(None, help="images or folders of images"),
            text: Optional[List[str]] = O(None, "--text", help="a text to classify (text runs; repeatable)"),
            file: Optional[Path] = O(None, "--file", help="a file of texts, one per line (text runs)"),
            topk: int = O(3, help="labels to show per input"),
            score_threshold: Optional[float] = O(None, help="detection: report boxes at or above this score"),
            draw: Optional[Path] = O(None, "--draw", help="detection: each image with its boxes drawn; segmentation: "
                                     "each image with its mask overlaid, written here"),
            out_dir: Optional[Path] = O(None, "--out", help="segmentation: write each mask here (index PNG)"),
            overlay: bool = O(False, "--overlay", help="with --out: also each image with its mask overlaid"),
            json_out: bool = O(False, "--json", help="JSON lines"), csv_out: bool = O(False, "--csv", help="CSV")) -> None:
    """Predictions for images, texts or clips: top-k labels with probabilities, boxes for a detection run, masks
    (class shares; --out writes them) for a segmentation run."""
    if overlay and out_dir is None:
        raise TransferkitError("--overlay goes with --out", "--out FOLDER for the masks (the overlays go beside them)",
                               "Add --out FOLDER, or use --draw FOLDER for overlays alone")
    if topk < 1:
        raise TransferkitError(f"--topk {topk} shows nothing", "--topk 1 or more")
    predictor = load(run, score_threshold=score_threshold)
    kind = predictor.modality
    if kind.inputs_are_files and (text or file is not None):
        raise TransferkitError(f"--text and --file are for text runs; {run} is a {kind.name} run",
                               kind.inputs_help, "Pass the files or folders as arguments")
    files = [i for i in inputs or [] if Path(i).exists()]
    if not kind.inputs_are_files and files:
        raise TransferkitError(f"{files[0]} is a file; {run} is a {kind.name} run, which classifies texts",
                               "texts", "Pass texts with --text, or a file of texts (one per line) with --file")
    items = list(inputs or []) + list(text or [])
    if file is not None:
        if not file.is_file():
            raise TransferkitError(f"File {file} does not exist", "a text file with one input per line")
        try:
            items += [ln for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError as exc:
            raise TransferkitError(f"{file} is not valid UTF-8 (byte {exc.start})", "a UTF-8 text file",
                                   "Re-save it as UTF-8") from None
    if not items:
        raise TransferkitError("Nothing to predict", kind.inputs_help)
    preds = predictor.predict(items, topk=topk)
    if draw is not None:
        written = predictor.task.draw(preds, draw)
        err.print(f"drew {len(written)} image(s) into {draw}")
    if out_dir is not None:
        written = predictor.task.write(preds, out_dir, overlay)
        err.print(f"wrote {len(written)} file(s) into {out_dir}")
    print_predictions(out, preds, predictor.task.rows(preds), "json" if json_out else "csv" if csv_out else "table", topk)


@app.command()
@with_train_options
def compare(data: str = typer.Argument(..., help="image folder, or CSV/TSV/JSONL"),
            strategies: Optional[str] = O(None, help="comma-separated strategies (default scratch,linear-probe,finetune,"
                                          "lp-ft; with --target linear-probe,finetune)"),
            seeds: int = O(3, help="seeds per strategy (paired across strategies)"),
            first_seed: int = O(0, help="first seed (to add seeds to an earlier comparison)"),
            resume: bool = O(False, "--resume", help="continue the comparison --name: reuse its finished runs, resume "
                             "interrupted ones, train the rest (e.g. more --seeds)"),
            config: Optional[Path] = O(None, help="YAML config; flags override it"),
            processes: Optional[int] = O(None, help="worker processes sharing each run's batches (default: one per GPU, else 1)"),
            shots: Optional[str] = O(None, help="training examples per class; a list (8,16,64) compares at each"),
            **options) -> None:
    """Train several strategies on the same split and seeds; report the gain over scratch."""
    _setup_logging()
    settings = {**(load_config_file(config) if config else {}), **settings_of(options)}
    output = settings.pop("output", "runs")
    run_name = settings.pop("name", None)
    strategies = strategies or ("linear-probe,finetune" if settings.get("target") else "scratch,linear-probe,finetune,lp-ft")
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    if settings.get("target"):  # domain adaptation: methods × strategies, gains over source only

        methods = [m.strip() for m in (settings.pop("adapt", None) or ADAPT_DEFAULT).split(",") if m.strip()]
        result = compare_adaptation(data, settings.pop("target"), names, methods, seeds=seeds, output=output,
                                    name=run_name, first_seed=first_seed, resume=resume, processes=processes,
                                    **settings)
        return print_comparison(out, result) if _dist.is_main() else None
    counts = _counts(shots) if shots is not None else [settings.pop("shots")] if settings.get("shots") else []
    if len(counts) > 1:
        sweep = compare_shots(data, names, counts, seeds=seeds, output=output, name=run_name, first_seed=first_seed,
                              processes=processes, **settings)
        return print_sweep(out, sweep) if _dist.is_main() else None
    if counts:
        settings["shots"] = counts[0]
    if resume and not run_name:
        raise TransferkitError("--resume needs the comparison's --name", "--name NAME (the folder under --output)")
    result = _compare(data, names, seeds=seeds, output=output, name=run_name, first_seed=first_seed,
                      resume=resume, processes=processes, **settings)
    if not _dist.is_main():
        return
    print_comparison(out, result)


@app.command()
@with_train_options
def tune(data: str = typer.Argument(..., help="the data, as for train"),
         trials: Optional[int] = O(None, help=f"trials to run (default {DEFAULT_TRIALS} when no --timeout)"),
         timeout: Optional[float] = O(None, help="seconds after which no new trial starts"),
         strategies: Optional[str] = O(None, help="comma-separated strategies to choose among (default: those the "
                                       "task trains with of linear-probe, lp-ft, finetune, gradual, frozen)"),
         space: Optional[Path] = O(None, "--space", help="YAML search space: option: {low, high, log} | [choices] | "
                                   "value (dotted keys such as run.lr allowed)"),
         pruner: str = O("median", help="median | hyperband | none: stop trials whose validation score lags"),
         storage: Optional[str] = O(None, help="an Optuna storage URL shared by several processes or machines "
                                    "(default: a journal file in the tune folder)"),
         resume: bool = O(False, "--resume", help="add trials to the study of --name"),
         config: Optional[Path] = O(None, help="YAML config; flags override it"),
         **options) -> None:
    """Search the settings (Optuna, TPE with pruning): every trial a run folder, the best chosen on val and scored on
    test once; report, parameter importances and the best settings as a --config file."""
    _setup_logging()
    settings = {**(load_config_file(config) if config else {}), **settings_of(options)}
    output = settings.pop("output", "runs")
    name = settings.pop("name", None)
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    result = run_tune(data, trials=trials, timeout=timeout, output=output, name=name, resume=resume, space=space,
                      candidates=names, pruner=pruner, storage=storage, **settings)
    print_tune(out, result)


ADAPT_DEFAULT = "none,coral,sa,ot,adabn,dann,cdan,mcc,self-train,oracle"


def _counts(text: str) -> list[int]:
    try:
        counts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise TransferkitError(f"--shots {text} is not a list of counts", "whole numbers ≥ 1, e.g. --shots 8,16,64")
    return counts


@app.command()
def rank(data: str = typer.Argument(..., help="image folder, or CSV/TSV/JSONL"),
         backbones: str = O(..., help="comma-separated backbones, e.g. packaged:efficientnet_lite0,random:tf_efficientnet_lite0"),
         metric: str = O("all", help="logme | leep | nce | hscore | knn | all (sorted by LogME)"),
         image_size: Optional[int] = O(None), cache_dir: Optional[str] = O(None),
         output: Path = O(Path("runs"), help="rank.json goes to OUTPUT/rank-<data>/"),
         then_train: Optional[str] = O(None, help="train the best backbone with this strategy"),
         modality: Optional[str] = O(None, help="image | text | audio (default: detected from the data)"),
         label_by: Optional[str] = O(None, help="regex over file names whose first group is the label (a flat folder)"),
         shots: Optional[int] = O(None, help="score on N training examples per class"),
         processes: Optional[int] = O(None, help="worker processes sharing feature extraction (default: one per GPU, else 1)")) -> None:
    """Score backbones on frozen features before training (transferability); best first."""
    _setup_logging()
    ds = data_for(resolve_config({"data": data, "shots": shots, "modality": modality, "label_by": label_by}))
    out_dir = output / f"rank-{Path(data).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    rows = _rank(ds, [b.strip() for b in backbones.split(",") if b.strip()], metric, cache_dir,
                 image_size=image_size, output=out_dir, processes=processes)
    if not _dist.is_main():
        return
    keys = [k for k in ("logme", "leep", "nce", "hscore", "knn") if any(r.get(k) is not None for r in rows)]
    t = Table(title=f"transferability on {ds.summary()}")
    for col in ("#", "backbone", *keys, "features", "time"):
        t.add_column(col, justify="left" if col == "backbone" else "right", no_wrap=col == "backbone")
    for i, r in enumerate(rows, 1):
        t.add_row(str(i), r["backbone"], *["—" if r.get(k) is None else f"{r[k]:.4g}" for k in keys],
                  str(r["num_features"]), f"{r['seconds']:.1f} s")
    out.print(t)
    out.print("rank.json:", Text(str(out_dir / 'rank.json'), style="bold"))
    if then_train:
        run = fit(ds, backbone=rows[0]["backbone"], strategy=then_train, image_size=image_size,
                  output=str(output), cache_dir=cache_dir)
        print_metrics(out, run.metrics)
        out.print("run folder:", Text(str(run.path), style="bold"))


@app.command()
def report(run: Path = typer.Argument(..., help="a finished run folder")) -> None:
    """(Re)write a run's report.html."""
    load_run(check_run_dir(run))
    out.print("report:", Text(str(write_run_report(run)), style="bold"))


@app.command()
def export(run: Path = typer.Argument(..., help="a finished run folder"),
           format: str = O("onnx", "--format", help="onnx | torchscript | safetensors"),
           out_dir: Optional[Path] = O(None, "--out", help="output folder (default RUN/export)"),
           check: Optional[Path] = O(None, help="images (file or folder) for the parity check (default: the run's eval split)"),
           max_check: int = O(64, help="at most this many images in the parity check")) -> None:
    """Export a run and check the exported model against PyTorch on real inputs."""
    _setup_logging()
    res = _export(run, format, out_dir, check, max_check)
    out.print("exported:", Text(str(res['path']), style="bold"))
    p = res["parity"]
    if p:
        out.print(f"parity on {p['n']} inputs: " + ", ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in p.items() if k != "n"))


@app.command()
def serve(run: Path = typer.Argument(..., help="a finished run folder"),
          host: str = O("127.0.0.1"), port: int = O(8000),
          max_batch: int = O(16, help="largest batch of concurrent requests run together")) -> None:
    """Serve a run over HTTP: POST /predict, GET /health, /labels, /docs, and / (the demo page where gradio is
    installed, else a plain upload page)."""
    _serve(run, host, port, max_batch, ui=None)


@app.command("app")
def demo_app(run: Path = typer.Argument(..., help="a finished run folder"),
             host: str = O("127.0.0.1"), port: int = O(7860),
             max_batch: int = O(16, help="largest batch of concurrent requests run together")) -> None:
    """A demo page of a run people can use (Gradio): upload or record an input, see the labels, boxes, mask or
    transcript; the JSON API (/predict, /docs) answers beside it."""
    _serve(run, host, port, max_batch, ui=True)


def _serve(run: Path, host: str, port: int, max_batch: int, ui: bool | None) -> None:
    if not 1 <= port <= 65535:
        raise TransferkitError(f"--port {port} is not a TCP port", "a port in 1–65535, e.g. 8000")
    try:
        import uvicorn  # optional (serve extra)

        if ui:
            import gradio  # noqa: F401  optional (app extra)
    except ImportError:
        extra = "app" if ui else "serve"
        raise TransferkitError(f"{'The demo page' if ui else 'serve'} needs {'gradio and ' if ui else ''}fastapi and "
                               "uvicorn", None, f"pip install 'transferkit[{extra}]'") from None
    uvicorn.run(create_app(run, max_batch=max_batch, ui=ui), host=host, port=port, log_level="info")


@app.command()
def models() -> None:
    """List backbone sources, the packaged (offline) backbones and the default backbone per task and kind of data."""
    print_models(out)


@app.command()
def demo(output: Path = O(Path("demo_runs"), help="where the demo writes its data and runs"),
         epochs: int = O(3)) -> None:
    """Offline demo: handwritten digits (from scikit-learn) with packaged EfficientNet-Lite0."""
    _setup_logging()
    run_demo(output, epochs=epochs, console=out)


def _interrupted() -> None:
    err.print("interrupted. A training run that finished at least one epoch keeps its folder (with checkpoint.pt): "
              "continue it with `transferkit train --resume RUN_FOLDER`; one stopped earlier left nothing behind, "
              "so start it again.")
    sys.exit(130)


def _declared_flags() -> None:
    """The commands that train take every option declared so far (a plug-in registered after this module was
    imported too)."""
    declared_flags((train, compare, tune))


def main() -> None:
    """Entry point: user errors are one line and exit 2; interrupted runs say how to resume."""
    _declared_flags()
    try:
        # Outside standalone mode typer *returns* exit codes, Ctrl-C's 130 among them: never end with 0 then.
        code = app(standalone_mode=False)
        if code == 130:
            _interrupted()
        if isinstance(code, int) and code:
            sys.exit(code)
    except TransferkitError as exc:
        err.print(Text("error:", style="bold red"), str(exc), highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if not _usage_error(exc):
            raise
        exc.show()  # click's usual message: usage, the hint to --help, the error
        sys.exit(exc.exit_code)


def _usage_error(exc: Exception) -> bool:
    """A misspelt option or command, a missing argument, a value of the wrong type: click's exceptions, whether
    raised by click itself or by the copy of it that typer ≥ 0.2x carries (typer.TyperException)."""
    return isinstance(exc, (ClickException, typer.TyperException)) and hasattr(exc, "show") and hasattr(exc, "exit_code")


if __name__ == "__main__":
    main()
