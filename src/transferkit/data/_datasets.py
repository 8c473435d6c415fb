"""Items, the labelled-data base class (scan, split, groups, leakage) and the image dataset."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ._images import check_image, load_rgb
from ._split import grouped_split, sample_shots, stratified_split
from ._tables import clean_label, clean_split, read_rows, warn_near_duplicate_labels

log = logging.getLogger("transferkit")
SPLITS = ("train", "val", "test")


@dataclass
class Items:
    """Items of one split: inputs (paths or texts) and integer labels."""

    inputs: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, idx: np.ndarray) -> "Items":
        return Items([self.inputs[i] for i in idx], [self.labels[i] for i in idx])


def split_settings(cfg) -> dict:
    """A run config's settings for reading and splitting labelled data (the keyword arguments of LabelledData)."""
    return dict(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.split_seed,
                on_bad_file=cfg.on_bad_file, shots=cfg.shots, group_by=cfg.group_by, label_by=cfg.label_by,
                quoting=cfg.quoting, on_leak=cfg.on_leak)


class LabelledData:
    """Base of all datasets. Call :meth:`setup` (``fit`` does) to scan and split.

    After setup: ``classes_``, ``splits_`` (name → :class:`Items`), ``bad_files_`` (path, reason).
    """

    kind = "image"
    #: ``check(path) -> None | reason``: decodes one file and says why it is unusable
    check = staticmethod(check_image)
    #: what a good input is, for error messages
    wanted = "only decodable images"
    #: inputs are file paths (``--group-by`` then reads the file name)
    inputs_are_files = True
    #: read inputs without labels too (a domain-adaptation target): a table without its label column, a folder of
    #: loose files; such inputs get the label None
    labels_optional = False

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                 on_bad_file: str = "skip", shots: int | None = None, group_by: str | None = None,
                 label_by: str | None = None, quoting: str = "auto", on_leak: str = "warn"):
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.on_bad_file = on_bad_file
        self.shots = shots
        self.group_by = group_by
        self.label_by = label_by  # folders: labels from file names (regex, first group) instead of sub-folders
        self.quoting = quoting  # tables: auto | csv | none (see _tables.read_rows)
        self.on_leak = on_leak  # identical inputs across splits or labels: warn | error
        self.row_groups_: dict[str, str] = {}  # input → group, from a table's ``group`` column

    # -- subclasses fill these ---------------------------------------------------------------
    def _collect(self) -> tuple[dict[str, list[tuple[str, str]]] | None, list[tuple[str, str]]]:
        """Return ({split: [(input, label_name)]} or None for unsplit, unsplit [(input, label)])."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def location(self) -> str:
        """The path the data was read from (saved as ``data`` in the run's config)."""
        return str(getattr(self, "root", None) or getattr(self, "csv_path", None) or getattr(self, "path", ""))

    # -- shared ---------------------------------------------------------------------------------
    @property
    def is_setup(self) -> bool:
        return hasattr(self, "splits_")

    def setup(self) -> "LabelledData":
        if self.is_setup:
            return self
        presplit, flat = self._collect()
        names = sorted({lab for rows in (presplit or {"all": flat}).values() for _, lab in rows})
        if len(names) < 2:
            skipped = len(getattr(self, "bad_files_", []))
            raise DataError(
                f"{self.describe()} has {len(names)} class(es) with usable inputs"
                + (f" ({names[0]})" if names else "")
                + (f"; {skipped} input(s) were skipped as unusable (see the warnings above)" if skipped else ""),
                "at least 2 classes, e.g. one sub-folder per class",
                "Add a folder (or label) for each class you want to tell apart",
            )
        self.classes_ = names
        index = {n: i for i, n in enumerate(names)}
        if presplit is None:
            items = Items([p for p, _ in flat], [index[lab] for _, lab in flat])
            self.splits_ = {k: items.subset(v) for k, v in self.split_indices(items.inputs, items.labels, names).items()}
            self.presplit_ = False
        else:
            self.splits_ = {k: Items([p for p, _ in presplit.get(k, [])],
                                     [index[lab] for _, lab in presplit.get(k, [])]) for k in SPLITS}
            self.presplit_ = True
            missing = [n for i, n in enumerate(names) if i not in set(self.splits_["train"].labels)]
            if missing:
                raise DataError(f"Class(es) {', '.join(missing)} have no training items in {self.describe()}",
                                "every class in the train split", "Add training examples for them")
        if self.shots:
            tr = self.splits_["train"]
            counts = np.bincount(np.asarray(tr.labels, dtype=int), minlength=len(names))
            short = [f"{names[c]} ({n})" for c, n in enumerate(counts) if n < self.shots]
            if short:
                log.warning("--shots %d: %d class(es) have fewer training items, and train on all they have: %s",
                            self.shots, len(short), ", ".join(short[:8]) + (" …" if len(short) > 8 else ""))
            self.splits_["train"] = tr.subset(sample_shots(np.asarray(tr.labels), self.shots, self.seed))
        self.leakage_ = self._check_leaks()
        return self

    def split_indices(self, inputs: list[str], labels: list[int], names: list[str]) -> dict[str, list[int]]:
        """The seeded split of items that came without one (indices per split): grouped where groups are known
        (``--group-by``, a ``group`` column; the groups of each split kept in ``split_groups_``), else stratified."""
        groups = self._groups(inputs)
        if groups is None:
            return stratified_split(labels, self.val_fraction, self.test_fraction, self.seed, names)
        parts = grouped_split(labels, groups, self.val_fraction, self.test_fraction, self.seed)
        self.split_groups_ = {k: sorted({groups[i] for i in v}) for k, v in parts.items()}
        return parts

    def _check_leaks(self) -> dict:
        """Identical inputs (byte-identical files, or the same text) in training and evaluation splits, or
        under two labels: counted for metrics.json, warned about, or refused with ``on_leak="error"``."""
        seen: dict[str, list[tuple[str, int, str]]] = {}
        it = iter(self.identity_keys([i for part in self.splits_.values() for i in part.inputs]))
        for split, part in self.splits_.items():
            for inp, lab in zip(part.inputs, part.labels):
                seen.setdefault(next(it), []).append((split, lab, inp))
        across = [v for v in seen.values() if {"train"} & {s for s, _, _ in v} and {"val", "test"} & {s for s, _, _ in v}]
        conflicting = [v for v in seen.values() if len({lab for _, lab, _ in v}) > 1]
        out = {"duplicates_across_splits": len(across), "same_input_different_labels": len(conflicting)}
        problems = []
        if across:
            problems.append(f"{len(across)} input(s) are both in training and in val/test (e.g. {across[0][0][2]} and "
                            f"{across[0][1][2]})")
        if conflicting:
            problems.append(f"{len(conflicting)} input(s) appear under two labels (e.g. {conflicting[0][0][2]})")
        if problems and self.on_leak == "error":
            raise DataError(f"{self.describe()}: " + "; ".join(problems), "each input once, in one split, with one label",
                            "Remove the duplicates, or pass --on-leak warn to go on")
        for p in problems:
            log.warning("possible leakage: %s; the scores may be optimistic (--on-leak error refuses such data)", p)
        return out

    def identity_keys(self, inputs: list[str]) -> list[str]:
        """What makes two inputs the same: a file's bytes (hashed while scanning; a saved split, never scanned, is
        hashed now), a text's words whatever the spacing and case."""
        if self.inputs_are_files:
            digests = getattr(self, "_digests", {})
            return [digests.get(i) or _digest(i) for i in inputs]
        return [" ".join(t.split()).casefold() for t in inputs]

    def all_rows(self) -> list[tuple[str, str | None]]:
        """Every usable input with its label name (None where it has none), whatever split it is in."""
        presplit, flat = self._collect()
        return [r for rows in (presplit or {}).values() for r in rows] + list(flat)

    def _table(self, path: Path, input_column: str, what: str) -> list[tuple[str, str, str, str | None, str]]:
        """Rows of a table as (where, input, label, split, group); unreadable rows, empty inputs and missing
        labels are listed in ``bad_files_`` with their line, never dropped silently."""
        table = read_rows(path, self.quoting)
        header = table.header
        labelled = self.label_column in header or not self.labels_optional
        for col in (input_column, self.label_column) if labelled else (input_column,):
            if col not in header:
                raise DataError(f"{path} has no column '{col}' (columns: {', '.join(header) or 'none'})",
                                f"columns '{input_column}' ({what}) and '{self.label_column}'",
                                "Rename the columns, or pass --path-column / --text-column / --label-column")
        problems = list(table.problems)
        rows = []
        for line, r in zip(table.lines, table.rows):
            where = f"{path}:{line}"
            value, label = r.get(input_column, "").strip(), clean_label(r.get(self.label_column))
            if value and label is None and self.labels_optional:
                rows.append((where, value, None, None, ""))
                continue
            if not value or label is None:
                raw = (r.get(self.label_column) or "").strip()
                problems.append((where, f"empty {what}" if not value else f"no label ({raw!r})" if raw else "no label"))
                continue
            rows.append((where, value, label, clean_split(r.get("split"), where), (r.get("group") or "").strip()))
        self.bad_files_ = getattr(self, "bad_files_", []) + problems
        if problems:
            log.warning("skipped %d row(s) of %s: %s%s", len(problems), path,
                        "; ".join(f"line {w.rsplit(':', 1)[-1]} ({r})" for w, r in problems[:5]),
                        " …" if len(problems) > 5 else "")
        warn_near_duplicate_labels([lab for _, _, lab, _, _ in rows if lab is not None], str(path))
        self.has_split_column_ = "split" in header
        unassigned = [w for w, _, _, sp, _ in rows if sp is None] if self.has_split_column_ else []
        if unassigned:
            raise DataError(f"{len(unassigned)} row(s) have an empty split value (first: {unassigned[0]})",
                            "train, val or test in every row of the split column",
                            "Fill the split column, or remove it to have the data split for you")
        return rows

    def _by_split(self, kept: list[tuple[str, str, str | None]]):
        """(presplit, flat) as ``_collect`` returns them, from (input, label, split) rows."""
        if self.has_split_column_:
            return {s: [(i, lab) for i, lab, sp in kept if sp == s] for s in SPLITS}, []
        return None, [(i, lab) for i, lab, _ in kept]

    def _groups(self, inputs: list[str]) -> list[str] | None:
        """The group of each input (``--group-by`` over the file name, or the table's group column)."""
        if self.group_by:
            pattern = _compile(self.group_by, "--group-by")
            found = [pattern.search(Path(i).name if self.inputs_are_files else i) for i in inputs]
            # the group: the first capture group (or the whole match); a group that captured nothing names none
            keys = [((m.group(1) if m.groups() else m.group(0)) or None) if m else None for m in found]
            unmatched = [i for i, k in zip(inputs, keys) if k is None]
            if len(unmatched) == len(inputs):
                raise DataError(f"--group-by {self.group_by!r} matches none of the {len(inputs)} file names, or its group "
                                f"captures nothing in any (e.g. {Path(inputs[0]).name})", "a regular expression that "
                                "matches the file names, its first capture group naming the group",
                                "Check the pattern; its first capture group (or the whole match) names the group")
            if unmatched:
                log.warning("%d input(s) do not match --group-by (or its group captured nothing); each is its own "
                            "group (e.g. %s)", len(unmatched), unmatched[0])
            return [k if k is not None else f"<{i}>" for i, k in zip(inputs, keys)]
        if self.row_groups_:
            return [self.row_groups_.get(i) or f"<{i}>" for i in inputs]
        return None

    def split_extras(self, split: str) -> dict:
        """What splits.json keeps of ``split`` beside its inputs and labels (none here)."""
        return {}

    def summary(self) -> str:
        self.setup()
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits_.items() if len(v))
        return f"{len(self.classes_)} classes ({', '.join(self.classes_[:8])}{'…' if len(self.classes_) > 8 else ''}); {sizes}"

    @property
    def eval_split(self) -> str:
        """The split the headline metrics come from: test when there is one, else val."""
        self.setup()
        if len(self.splits_["test"]):
            return "test"
        if len(self.splits_["val"]):
            return "val"
        if self.presplit_:
            raise DataError(f"{self.describe()} is split already but has no val or test items",
                            "a val/ or test/ folder (or split column values), whose items are scored",
                            "Add one; --val-fraction and --test-fraction only split data that comes unsplit")
        raise DataError(f"{self.describe()} has no val or test split to evaluate on",
                        "--val-fraction or --test-fraction above 0", "Set one of them (e.g. --test-fraction 0.15)")

    def for_choosing(self, fraction: float = 0.2) -> tuple["LabelledData", "LabelledData", str]:
        """Data for choices made before the one final score: (what candidates train and are scored on — train and
        val, no test —, what the kept one is scored on, how). With a test split both keep train and val as given.
        Without one, the evaluation split (val) becomes the test split and ``fraction`` of train, seeded (grouped
        where groups are known, else stratified), becomes val: the reported score stays one no choice saw."""
        final = copy.copy(self)
        how = "val chooses; test scores the kept model once"
        if self.eval_split == "val":  # (set up; with neither val nor test to score, eval_split says so)
            train = self.splits_["train"]
            groups = self._groups(train.inputs)
            try:
                parts = stratified_split(train.labels, fraction, 0.0, self.seed, self.classes_) if groups is None \
                    else grouped_split(train.labels, groups, fraction, 0.0, self.seed)
            except DataError:  # too few items per class (or groups) to hold any out: nothing to choose on
                parts = {"train": np.arange(len(train)), "val": np.arange(0)}
            final.splits_ = {"train": train.subset(parts["train"]), "val": train.subset(parts["val"]),
                             "test": self.splits_["val"]}
            how = (f"{len(parts['val'])} items of train ({fraction:.0%}) choose; the given val ({len(self.splits_['val'])}) "
                   "is held out and scores the kept model once")
        choosing = copy.copy(final)
        choosing.splits_ = {**final.splits_, "test": Items([], [])}
        return choosing, final, how

    def _list_problems(self, problems: list[tuple[str, str]]) -> None:
        """Add what a reader could not use to ``bad_files_`` (the run's bad_files.txt), saying the first few."""
        self.bad_files_ = getattr(self, "bad_files_", []) + list(problems)
        for where, reason in problems[:5]:
            log.warning("skipped %s: %s", where, reason)
        if len(problems) > 5:
            log.warning("skipped %d more (listed in the run's bad_files.txt)", len(problems) - 5)

    def _carve_val(self, parts: dict[str, list]) -> dict[str, list]:
        """A given split without val: ``val_fraction`` of train, seeded, becomes val (never any of test)."""
        if parts["val"] or self.val_fraction <= 0 or len(parts["train"]) < 2:
            return parts
        order = np.random.default_rng(self.seed).permutation(len(parts["train"]))
        n_val = max(1, round(self.val_fraction * len(order)))
        return {**parts, "val": [parts["train"][i] for i in sorted(order[:n_val])],
                "train": [parts["train"][i] for i in sorted(order[n_val:])]}

    def _filter_bad(self, paths: list[Path]) -> list[Path]:
        """Decode every file once; list and drop bad ones (or stop, with on_bad_file=error). The same pass
        hashes each file's bytes for the leakage check."""

        def inspect(path: Path) -> str | None:
            reason = self.check(path)
            if reason is None:
                self._digests[str(path)] = _digest(str(path))
            return reason

        self._digests: dict[str, str] = getattr(self, "_digests", {})
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            reasons = list(pool.map(inspect, paths))
        bad = [(str(p), r) for p, r in zip(paths, reasons) if r is not None]
        self.bad_files_ = getattr(self, "bad_files_", []) + bad
        if bad and self.on_bad_file == "error":
            p, r = bad[0]
            raise DataError(f"Bad file {p}: {r}", self.wanted,
                            f"Remove it ({len(bad)} bad file(s) in all), or use --on-bad-file skip")
        for p, r in bad:
            log.warning("skipped %s: %s", p, r)
        return [p for p, r in zip(paths, reasons) if r is None]


def _digest(path: str) -> str:
    """The SHA-1 of a file's bytes (its identity for the leakage check)."""
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        return f"<unreadable {path}>"


def _compile(pattern: str, flag: str):
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise DataError(f"{flag} {pattern!r} is not a valid regular expression ({exc})",
                        "a regular expression with one capture group, e.g. '^(\\d+)_'") from None


class ImageDataset(torch.utils.data.Dataset):
    """(path, label) items → (transformed tensor, label); ``load`` decodes a path (images by default).

    Args:
        cache: an ``ImageCache``; with an ``ImageTransform`` the presized images it holds are used
            instead of decoding again (the tensors are identical either way).
        fill: decode and store the missing images in ``cache`` now (worth it when the dataset is
            read more than once, e.g. every epoch).
        progress: ``callable(n)`` advanced while filling.
    """

    def __init__(self, items: Items, transform, cache=None, fill: bool = False, progress=None, load=None):
        self.items = items
        self.transform = transform
        self.load = load
        presize = getattr(transform, "presize", None)
        self.held = None
        if cache is not None and presize is not None:
            self.held = cache.take(list(items.inputs), presize, fill=fill, progress=progress, load=load)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if self.held is not None and self.held[i] is not None:
            return self.transform.tensor_ops(self.held[i]), self.items.labels[i]
        return self.transform((self.load or load_rgb)(self.items.inputs[i])), self.items.labels[i]
