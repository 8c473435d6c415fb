"""The target domain: inputs read by the source's modality, with labels only where the data has them (read to
score the result, never to train or choose)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..data import Items, split_settings
from ..errors import DataError
from ..modalities import check_data_path

log = logging.getLogger("transferkit")
MIN_TARGET = 2  # inputs: one cannot give a covariance, a subspace or batch statistics
UNLABELLED = -1  # the label of a target input without one, or of a class the source does not have


@dataclass
class Target:
    """Target inputs; ``items.labels`` are source class indices, UNLABELLED where unknown or absent."""

    location: str
    items: Items
    names: list[str | None]  # each input's own label name as read (None: unlabelled)
    unknown: dict[str, int] = field(default_factory=dict)  # label names the source lacks → count
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    shared_with_source: int = 0

    @property
    def n_scored(self) -> int:
        return sum(1 for lab in self.items.labels if lab != UNLABELLED)


def read_target(path: str | Path, cfg, modality, source) -> Target:
    """Read ``path`` (a folder, with or without class folders, or a table) as the source's modality reads data."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Target data {path} does not exist", "a folder of target inputs (class sub-folders are "
                        "optional and only score the result) or a CSV of paths / texts", "Check --target")
    check_data_path(path, "Target data")  # a single photo or clip is not a target set
    reader = modality.data(path, cfg, **{**split_settings(cfg), "shots": None, "group_by": None})
    reader.labels_optional = True
    rows = reader.all_rows()
    bad = list(getattr(reader, "bad_files_", []))
    if 0 < len(rows) < MIN_TARGET:
        raise DataError(f"Target data {path} has {len(rows)} usable input(s)", f"at least {MIN_TARGET} target inputs: "
                        "adaptation estimates the target's statistics (covariance, subspace, BatchNorm, a "
                        "domain classifier) from them", "Add more inputs from where the model will be used")
    if not rows:
        raise DataError(f"Target data {path} has no usable inputs" + (f" ({len(bad)} unusable, e.g. {bad[0][0]}: "
                        f"{bad[0][1]})" if bad else ""), f"{modality.name} inputs the source's modality reads",
                        "Point --target at a folder of target inputs, or a CSV with a path (or text) column")
    index = {name: i for i, name in enumerate(source.classes_)}
    unknown = Counter(lab for _, lab in rows if lab is not None and lab not in index)
    if unknown:
        log.warning("target class(es) unknown to the source: %s; their %d input(s) are adapted to but not scored",
                    ", ".join(f"{k} ({v})" for k, v in sorted(unknown.items())[:8]), sum(unknown.values()))
    items = Items([i for i, _ in rows], [index.get(lab, UNLABELLED) if lab is not None else UNLABELLED
                                         for _, lab in rows])
    shared = _shared(source, reader, items.inputs)
    if shared:
        log.warning("%d target input(s) are also in the source data (e.g. %s): the target is then not unseen",
                    len(shared), shared[0])
    target = Target(str(path), items, [lab for _, lab in rows], dict(unknown), bad, len(shared))
    log.info("target: %d inputs from %s (%d with a source class label, scored only)", len(items), path,
             target.n_scored)
    return target


def _shared(source, reader, inputs: list[str]) -> list[str]:
    """Target inputs identical to a source input (the leakage check's notion of identical)."""
    seen = set(source.identity_keys([i for part in source.splits_.values() for i in part.inputs]))
    return [i for i, key in zip(inputs, reader.identity_keys(inputs)) if key in seen]
