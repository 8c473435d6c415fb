"""The checks ``tune`` makes before its first trial: every value of the search space is one a run accepts, and a
study is only continued on the data and settings it was made on (a fingerprint recorded in the study)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from .config import options, resolve_config
from .errors import ConfigError


def fingerprint(data, fixed: dict, space: dict) -> str:
    """What a study's trials are comparable on: every split's inputs (with each file's size) and labels, the class
    names, the fixed settings and the search space. A study is only ever continued on the same fingerprint."""
    def size(i: str) -> int:
        try:
            return os.stat(i).st_size
        except (OSError, ValueError):
            return -1

    splits = {k: [[str(i), size(str(i)) if len(str(i)) < 4096 else -1, repr(lab)] for i, lab in zip(v.inputs, v.labels)]
              for k, v in sorted(data.splits_.items())}
    doc = {"splits": splits, "classes": [str(c) for c in getattr(data, "classes_", [])],
           "fixed": {k: repr(v) for k, v in sorted(fixed.items()) if k not in ("output", "name", "cache_dir")},
           "space": {k: repr(v) for k, v in sorted(space.items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def check_same_study(study, fp: str, folder: Path) -> None:
    """A new study records its fingerprint; one that has it (``--resume``, the same ``--name`` on the same
    ``--storage``, another worker) must match it: trials on other data or settings would be ranked together and the
    old data's best model scored on the new test set."""
    known = study.user_attrs.get("fingerprint")
    if known is None:
        if study.trials:
            raise ConfigError(f"The study {study.study_name} has {len(study.trials)} trial(s) but no record of their "
                              "data and settings", "a study made by transferkit tune",
                              "Start a new study with another --name")
        study.set_user_attr("fingerprint", fp)
    elif known != fp:
        raise ConfigError(f"The study {study.study_name} ({folder}) was run on other data or settings (its inputs, "
                          "labels, fixed flags or search space differ)", "the same DATA, flags and --space to add "
                          "trials to it", "Start a new study with another --name")


def check_spec(name: str, spec: tuple, where: str) -> None:
    """Every value a search entry can take is one the option accepts (its type, choices and range), checked before the
    first trial: a space that would fail every trial is one error line, not N failed trials."""
    if name == "strategy":
        return
    kind, *args = spec
    if kind in ("int", "float", "log"):
        o = options()[name]
        if o.kind not in (int, float):
            raise ConfigError(f"{where}: '{name}' is given a range, but it takes {o.kind.__name__} values",
                              f"a list of choices for {name}" + (f" among {', '.join(map(str, o.choices))}"
                                                                 if o.choices else ""), f"Fix the entry for {name}")
        if not all(math.isfinite(float(a)) for a in args):
            raise ConfigError(f"{where}: '{name}' has the range {args[0]!r} … {args[1]!r}", "finite numbers",
                              f"Fix the range of {name}")
        values = [int(a) if o.kind is int and float(a).is_integer() else a for a in args]
    else:
        values = args
    for v in values:
        try:
            resolve_config({name: v})
        except ConfigError as exc:
            raise ConfigError(f"{where}: '{name}' can take the value {v!r}, which a run refuses ({exc.what})",
                              exc.expected or "values the option accepts", f"Fix the entry for {name}") from None
