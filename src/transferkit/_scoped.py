"""Process state a run must change, changed for the run alone: every value is put back as it was (unset stays
unset), so two runs in one process — a comparison, a search, a notebook — never see each other's settings."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def environ(**values: str):
    """Set environment variables inside the block; afterwards each is as it was before."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)  # the one place the project sets variables: always undone below
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ.update({key: old})
