"""Several processes: start them (``--processes N``, through torch's elastic launcher — the machinery behind
``torchrun`` and ``accelerate launch``), or join the process group when one of those tools started us."""

from __future__ import annotations

import functools
import logging
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from . import _dist
from ._runfolder import CHECKPOINT
from .errors import ConfigError, TrainingError, TransferkitError

log = logging.getLogger("transferkit")
_LAUNCH_DIR = "TRANSFERKIT_LAUNCH_DIR"  # where workers leave their errors and the run folder for the launcher


def launched() -> bool:
    """True inside a process started as one of several (torchrun, accelerate launch, --processes)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout_seconds() -> int:
    """How long a collective operation waits for the other processes before failing (not hanging)."""
    return int(os.environ.get("TRANSFERKIT_DIST_TIMEOUT", "1800"))


def wanted_processes(processes: int | None, cpu: bool = False) -> int:
    """``processes`` as given; by default one per GPU when there are GPUs, else 1."""
    if processes is None:
        return torch.cuda.device_count() if torch.cuda.is_available() and not cpu else 1
    if not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= 1024:
        raise ConfigError(f"processes={processes!r} is out of range", "a whole number of processes, 1–1024",
                          "Use --processes 2 (or leave it out: one per GPU, else 1)")
    return processes


def join_process_group(cpu: bool) -> None:
    """Join the process group this process was launched into (a no-op in one process).

    CPU workers use gloo and share the cores (threads = cores / local processes unless OMP_NUM_THREADS is
    set); GPU workers use NCCL, one GPU each. Collective operations time out after
    ``TRANSFERKIT_DIST_TIMEOUT`` seconds, so a lost process ends the run with an error, not a hang.
    """
    if not launched() or _dist.world() > 1:
        return
    from accelerate import PartialState  # heavy: loaded on first use

    cpu = cpu or not torch.cuda.is_available()
    if cpu:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // local)))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_seconds()))
    if not _dist.is_main():
        log.setLevel(logging.WARNING)  # one voice: the main process logs
    log.info("distributed: %d processes (%s), this is rank %d", _dist.world(), "gloo" if cpu else "nccl",
             _dist.rank())


def announce_run_dir(path: Path) -> None:
    """Tell the launcher (if any) which run folder the workers write, for its error message."""
    where = os.environ.get(_LAUNCH_DIR)
    if where and _dist.is_main():
        Path(where, "run_dir").write_text(str(path))


def across_processes(fn):
    """Give ``fn`` a ``processes=`` keyword: with more than one (by default one per GPU), ``fn`` runs in that many
    worker processes and the main one's result is returned; inside a worker, or with one process, ``fn`` runs
    here. ``fn`` joins the process group itself (:func:`join_process_group`), with the device it resolves."""

    @functools.wraps(fn)
    def run(*args, processes: int | None = None, **kwargs):
        n = wanted_processes(processes, bool(kwargs.get("cpu")))
        if n > 1 and not launched():
            return launch(run, n, *args, **kwargs)  # ``run`` pickles by name: the workers call this wrapper
        return fn(*args, **kwargs)

    return run


def launch(entry, processes: int, *args, **kwargs):
    """Run ``entry(*args, **kwargs)`` in ``processes`` local worker processes; return the main one's result.

    A worker that fails or dies stops all of them; a :class:`TransferkitError` raised in a worker is raised
    here unchanged, any other failure as a :class:`TrainingError` naming the process and the run folder.
    """
    where = tempfile.mkdtemp(prefix="transferkit-launch-")
    elastic = logging.getLogger("torch.distributed.elastic")
    level, elastic.level = elastic.level, logging.CRITICAL  # its per-process failure notes: ours says it once
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    try:
        return elastic_launch(config, _worker)(where, os.getpid(), entry, args, kwargs)[0]
    except ChildFailedError as exc:
        raise _explain(exc, Path(where), processes) from None
    finally:
        elastic.setLevel(level)
        shutil.rmtree(where, ignore_errors=True)


def _die_with_launcher(parent: int, interval: float = 0.5) -> None:
    """End this worker when its launcher (process ``parent``) is gone — killed with SIGKILL, it cannot stop its
    workers: a daemon thread exits at once when this process is re-parented (also when that happened while it was
    still starting)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="transferkit-launcher-watch").start()


def _worker(where: str, launcher: int, entry, args, kwargs):
    _die_with_launcher(launcher)
    os.environ[_LAUNCH_DIR] = where
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.INFO)
    try:
        return entry(*args, **kwargs)
    except TransferkitError as exc:  # a user error: the launcher raises it as it is, without a worker traceback
        Path(where, f"error{os.environ.get('RANK', '0')}.pkl").write_bytes(pickle.dumps(exc))
        sys.exit(2)
    except Exception as exc:  # any other failure: its cause goes to the launcher, which names it in its one line
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        said = str(exc).splitlines()[0][:300] if str(exc) else ""
        cause = f"{type(exc).__name__}: {said} ({Path(frame.filename).name}:{frame.lineno})"
        Path(where, f"failure{os.environ.get('RANK', '0')}.txt").write_text(cause, encoding="utf-8")
        raise


def _explain(exc, where: Path, processes: int) -> TransferkitError:
    """The error to show for a failed launch: a worker's own TransferkitError, else which process stopped how."""
    for path in sorted(where.glob("error*.pkl")):
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # an unreadable record: fall through to the generic message
            pass
    # The root cause first: a process killed from outside (the OOM killer's SIGKILL, a crash's SIGSEGV; SIGTERM is
    # the launcher stopping the others), else a worker's own exception as it said it, else the first failure.
    failures = sorted(exc.failures.items())
    killed = [(r, f) for r, f in failures if f.exitcode < 0 and f.signal_name() != "SIGTERM"]
    causes = sorted(where.glob("failure*.txt"))
    rank, failure = (killed or failures)[0]
    how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
    if causes and not killed:
        rank = int(causes[0].stem.removeprefix("failure") or 0)
        how = f"failed with {causes[0].read_text(encoding='utf-8')}"
    record = where / "run_dir"
    run_dir = Path(record.read_text()) if record.is_file() else None
    resume = (f"; continue it with `transferkit train --resume {run_dir}`"
              if run_dir is not None and (run_dir / CHECKPOINT).is_file() else "")
    return TrainingError(f"Worker process {rank} of {processes} {how}, so all {processes} were stopped{resume}",
                         "every worker to run to the end",
                         "Fix the cause named here and start the run again" if causes and not killed else
                         "A worker stopped without an exception of its own: most often memory (the system killed it) "
                         "or a signal")
