"""Progress bars with ETA (rich), quiet when output is not a terminal or when asked."""

from __future__ import annotations

import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import _dist

console = Console(stderr=True)


def progress_enabled() -> bool:
    """Bars on a terminal, unless TRANSFERKIT_QUIET is set; with several processes, the main process's only."""
    return console.is_terminal and os.environ.get("TRANSFERKIT_QUIET", "") in ("", "0") and _dist.is_main()


@contextmanager
def progress_bar(description: str, total: int):
    """Yield ``update(advance=1, **fields)``; shows ``description``, count, elapsed and ETA."""
    if not progress_enabled():
        yield lambda advance=1, info="": None
        return
    with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TextColumn("eta"),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task(description, total=total, info="")

        def update(advance: int = 1, info: str = "") -> None:
            prog.update(task, advance=advance, info=info)

        yield update
