"""Datasets of files: a folder (class folders, split folders, or labels in file names), a CSV of paths,
and the saved split of an earlier run."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .. import _runfolder as rf
from ..errors import DataError
from ._datasets import SPLITS, LabelledData, _compile
from ._tables import SPLIT_ALIASES

log = logging.getLogger("transferkit")


def _class_files(class_dir: Path) -> list[Path]:
    files = []
    for dirpath, _dirs, names in os.walk(class_dir, followlinks=False):  # no symlink loops
        files.extend(Path(dirpath) / n for n in sorted(names))
    return sorted(files)


class ImageFolderData(LabelledData):
    """Images in ``root/<class>/*`` (split for you) or ``root/{train,val,test}/<class>/*``.

    Example:
        >>> data = ImageFolderData("photos/", val_fraction=0.2, seed=0)
    """

    def __init__(self, root: str | Path, **kwargs):
        super().__init__(**kwargs)
        self.root = root

    def describe(self) -> str:
        return f"{self.kind} folder {self.root}"

    def _collect(self):
        root = Path(self.root)
        if not root.is_dir():
            raise DataError(f"Data folder {root} does not exist" if not root.exists() else f"{root} is not a folder",
                            "a folder with one sub-folder of images per class (or train/, val/, test/ inside)",
                            "Check the path")
        subdirs = self._class_dirs(root)
        # Pre-split only when every sub-folder names a split: a class that happens to be called "train"
        # beside other classes is a class.
        splits = {SPLIT_ALIASES.get(d.name.lower()) for d in subdirs}
        if subdirs and None not in splits and "train" in splits:
            out: dict[str, list] = {s: [] for s in SPLITS}
            for d in subdirs:
                out[SPLIT_ALIASES[d.name.lower()]] += self._scan(d)
            return out, []
        return None, self._scan(root)

    def _class_dirs(self, root: Path) -> list[Path]:
        """Sub-folders that hold classes; hidden ones are left out with a log line."""
        dirs = sorted(d for d in root.iterdir() if d.is_dir())
        hidden = [d.name for d in dirs if d.name.startswith(".")]
        if hidden:
            log.info("%s: hidden folder(s) %s are not classes", root, ", ".join(hidden[:5]))
        links = [d.name for d in dirs if d.is_symlink()]
        if links:
            log.warning("%s: %s %s symbolic link(s) to folders; their files are read as a class of their own "
                        "(check it is not a loop or a duplicate of another class)", root, ", ".join(links[:5]),
                        "is a" if len(links) == 1 else "are")
        return [d for d in dirs if not d.name.startswith(".")]

    def _scan(self, root: Path) -> list[tuple[str, str]]:
        if self.label_by:
            return self._scan_by_name(root)
        classes = self._class_dirs(root)
        loose = [f for f in sorted(root.iterdir()) if f.is_file() and not f.name.startswith(".")]
        if self.labels_optional and loose:  # files beside (or instead of) class folders: inputs without labels
            rows = [(str(p), None) for p in self._filter_bad(loose)]
            return rows + [r for cdir in classes for r in self._scan_class(cdir)]
        if not classes and loose:
            raise DataError(f"{self.describe()} holds files but no class sub-folders",
                            "one sub-folder per class, or labels in the file names",
                            "Move the files into one folder per class, or take labels from the file names with "
                            "--label-by REGEX (its first group is the label, e.g. '^([a-z]+)_' or '^(\\d+)_')")
        return [r for cdir in classes for r in self._scan_class(cdir)]

    def _scan_class(self, cdir: Path) -> list[tuple[str, str]]:
        good = self._filter_bad(_class_files(cdir))
        if not good:
            log.warning("class folder %s has no usable %s files; the class is left out", cdir, self.kind)
        return [(str(p), cdir.name) for p in good]

    def _scan_by_name(self, root: Path) -> list[tuple[str, str]]:
        """Every file under ``root``; its label is ``label_by``'s first group over the file name."""

        pattern = _compile(self.label_by, "--label-by")
        named, unmatched = [], []
        for f in _class_files(root):
            m = pattern.search(f.name)
            if m:
                named.append((f, m.group(1) if m.groups() else m.group(0)))
            else:
                unmatched.append((str(f), f"file name does not match --label-by {self.label_by!r}"))
        if not named:
            raise DataError(f"--label-by {self.label_by!r} matches none of the file names in {root}",
                            "a regular expression whose first group is the label", "Check the pattern")
        self.bad_files_ = getattr(self, "bad_files_", []) + unmatched
        for p, r in unmatched[:5]:
            log.warning("skipped %s: %s", p, r)
        good = set(self._filter_bad([f for f, _ in named]))
        return [(str(f), lab) for f, lab in named if f in good]


class SavedSplit(LabelledData):
    """The exact split an earlier run saved (``splits.json`` + ``labels.json``): what ``--resume`` trains on,
    so that a changed data folder can never move test items into training."""

    def __init__(self, run_dir: str | Path, kind: str, inputs_are_files: bool = True):
        super().__init__(shots=None)
        self.run_dir = Path(run_dir)
        self.kind = kind
        self.inputs_are_files = inputs_are_files

    def describe(self) -> str:
        return f"the saved split of {self.run_dir}"

    def _collect(self):
        labels = json.loads((self.run_dir / rf.LABELS).read_text())
        splits = rf.read_splits(self.run_dir)
        rows = {k: [(i, labels[lab]) for i, lab in zip(v["inputs"], v["labels"])] for k, v in splits.items()}
        if self.inputs_are_files:
            gone = [i for part in rows.values() for i, _ in part if not Path(i).is_file()]
            if gone:
                raise DataError(f"{len(gone)} file(s) of the saved split are gone (e.g. {gone[0]})",
                                "every file the run was split over", "Put the data back where it was, or start a new run")
        self.bad_files_ = []
        return rows, []


class CsvImageData(LabelledData):
    """A CSV with an image path column and a label column (optional ``split`` column).

    Relative paths are taken relative to the CSV's folder.
    """

    def __init__(self, csv_path: str | Path, path_column: str = "path", label_column: str = "label", **kwargs):
        super().__init__(**kwargs)
        self.csv_path = csv_path
        self.path_column = path_column
        self.label_column = label_column

    def describe(self) -> str:
        return f"CSV {self.csv_path}"

    def _collect(self):
        path = Path(self.csv_path)
        resolved = []
        for where, value, label, split, group in self._table(path, self.path_column, f"{self.kind} path"):
            p = Path(value)
            p = p if p.is_absolute() else path.parent / p
            if not p.exists():
                raise DataError(f"{where}: {self.kind} {p} does not exist", f"paths to existing {self.kind} files",
                                "Fix the path (relative paths are taken from the CSV's folder)")
            resolved.append((p, label, split))
            if group:
                self.row_groups_[str(p)] = group
        good = set(self._filter_bad([p for p, _, _ in resolved]))
        return self._by_split([(str(p), lab, sp) for p, lab, sp in resolved if p in good])
