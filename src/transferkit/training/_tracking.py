"""Experiment trackers through the ones accelerate integrates (``accelerate.tracking``: TensorBoard, MLflow, W&B,
Comet, Aim, ClearML, DVCLive, …): the resolved config as parameters, every epoch's row as metrics, the final
metrics, and the report, metrics.json and model as artifacts where the tracker takes files. The main process logs;
a tracker that is not installed or cannot start is said in one line and the run goes on without it."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from .. import _dist
from .. import _runfolder as rf
from .._scoped import environ
from ..errors import ConfigError

log = logging.getLogger("transferkit")


def _flat(values: dict, prefix: str = "") -> dict[str, float]:
    """Numbers of a (nested) dict, with dotted keys: what every tracker can plot."""
    out: dict[str, float] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            out[f"{prefix}{k}"] = float(v)
    return out


def tracker_names(cfg) -> list[str]:
    """``--track``'s names, checked against accelerate's trackers (before a run folder is made)."""
    names = list(dict.fromkeys(n.strip().lower() for n in (cfg.track or "").split(",") if n.strip()))  # once each
    if cfg.track_uri and not names:
        log.warning("--track-uri %s has no effect without --track (e.g. --track mlflow)", cfg.track_uri)
    if names:
        from accelerate import tracking  # heavy: loaded on first use

        unknown = [n for n in names if n not in tracking.LOGGER_TYPE_TO_CLASS]
        if unknown:
            raise ConfigError(f"Unknown --track {', '.join(unknown)}", f"any of {', '.join(tracking.LOGGER_TYPE_TO_CLASS)}",
                              "Fix the tracker names")
    return names


class Tracking:
    """The run's trackers (none without ``--track``). ``group``: the comparison or search the run belongs to
    (TensorBoard: a sub-folder per run under the group's folder; MLflow: the group is the experiment)."""

    def __init__(self, cfg, run_dir: Path, group: str | None = None):
        self.trackers: list = []
        self._scope = contextlib.ExitStack()  # what this run changed in the process, undone by close()
        names = tracker_names(cfg)
        if not names or not _dist.is_main():
            return
        from accelerate import tracking  # heavy: loaded on first use

        run_dir = Path(run_dir)
        base = Path(group) if group else run_dir
        for name in names:
            try:
                self.trackers.append(self._start(tracking, name, cfg, run_dir, base, group))
            except Exception as exc:  # noqa: BLE001 - a tracker is never a reason to lose the run
                log.warning("tracker %s is not used: %s (the run goes on without it)", name,
                            _why(exc, name))

    def _use_mlflow_store(self, uri: str | None) -> None:
        """This run's MLflow store, set where MLflow reads it (the environment and its process-wide URI) until
        :meth:`close`. None: the store the user already set."""
        if uri is None:
            return
        import mlflow  # optional (installed with the tracker)
        from mlflow.tracking._tracking_service import utils as mlflow_store  # where MLflow keeps the set URI

        self._scope.enter_context(environ(MLFLOW_TRACKING_URI=uri))
        self._scope.callback(mlflow.set_tracking_uri, getattr(mlflow_store, "_tracking_uri", None))  # undone first
        mlflow.set_tracking_uri(uri)

    def _start(self, tracking, name: str, cfg, run_dir: Path, base: Path, group: str | None):
        from accelerate.utils import imports  # heavy: loaded on first use

        available = getattr(imports, f"is_{name}_available", lambda: True)
        if not available():
            raise ImportError(f"{name} is not installed")
        cls = tracking.LOGGER_TYPE_TO_CLASS[name]
        if name == "tensorboard":  # event files in the run folder, or one folder per run under the group's
            tracker = cls(run_dir.name if group else "tensorboard", base / "tensorboard" if group else run_dir)
        elif name == "mlflow":
            self._use_mlflow_store(cfg.track_uri or (None if _mlflow_uri_set() else  # else a local store beside
                                                      f"sqlite:///{_beside(cfg, group) / 'mlflow.db'}"))  # the runs
            tracker = cls(experiment_name=Path(group).name if group else "transferkit", run_name=run_dir.name,
                          logging_dir=(_beside(cfg, group) / "mlartifacts").as_uri())
        else:
            tracker = cls(run_dir.name)
        tracker.start()
        tracker.store_init_configuration({k: v for k, v in cfg.to_dict().items() if not isinstance(v, dict)})
        return tracker

    def epoch(self, epoch: int, row: dict) -> None:
        self._each("log", _flat({k: v for k, v in row.items() if k != "epoch"}), step=epoch + 1)  # the step is it

    def finish(self, run_dir: Path, metrics: dict) -> None:
        """The final metrics, the run folder's report, metrics.json and model as artifacts; then close."""
        self._each("log", _flat({"final": metrics}))
        for t in self.trackers:
            try:
                _artifacts(t, Path(run_dir))
            except Exception as exc:  # noqa: BLE001
                log.warning("tracker %s: artifacts not stored (%s)", t.name, _why(exc, t.name))
        self.close()

    def close(self) -> None:
        """Close trackers still open (a run that failed or was interrupted: what it logged stays) and restore the
        environment the run changed."""
        self._each("finish")
        self.trackers = []
        self._scope.close()  # a second run in this process (compare, tune, a notebook) starts clean

    def _each(self, method: str, *args, **kwargs) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a tracker that stops answering is dropped, the run goes on
                log.warning("tracker %s stopped (%s); the run goes on without it", t.name, _why(exc, t.name))
                self.trackers.remove(t)


def _mlflow_uri_set() -> bool:
    """Whether the user chose an MLflow store (MLFLOW_TRACKING_URI, or mlflow.set_tracking_uri in this process)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return True
    from mlflow.tracking._tracking_service import utils as mlflow_store  # optional (installed with the tracker)

    return bool(getattr(mlflow_store, "_tracking_uri", None))


def _beside(cfg, group: str | None) -> Path:
    """Where the local MLflow store goes: beside the comparison or search, else beside the run folders."""
    where = Path(group).parent if group else Path(cfg.output)
    where.mkdir(parents=True, exist_ok=True)
    return where.resolve()


def _artifacts(tracker, run_dir: Path) -> None:
    files = [run_dir / f for f in (rf.REPORT, rf.METRICS, rf.WEIGHTS, rf.MODEL_META, rf.CONFIG)
             if (run_dir / f).is_file()]
    if tracker.name == "mlflow":
        import mlflow  # optional (installed with the tracker)

        client, run_id = mlflow.MlflowClient(), tracker.active_run.info.run_id
        for f in files:
            client.log_artifact(run_id, str(f))
    elif tracker.name == "wandb":
        for f in files:
            tracker.tracker.save(str(f), base_path=str(run_dir))


def _why(exc: Exception, name: str) -> str:
    said = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    if isinstance(exc, ImportError):
        return f"{said}; pip install {name.replace('_', '-')}"
    return said
