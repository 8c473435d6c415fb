"""Stratified, seeded splits and few-shot sampling."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def stratified_split(
    labels: list[int] | np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    class_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Split indices per class so each split keeps the class proportions.

    Every class gets at least one item in each split whose fraction is > 0, and at least one
    training item; a class too small for that is an error naming the class.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}`` (sorted index arrays; empty when fraction is 0).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = len(idx)
        n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
        n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
        if n - n_val - n_test < 1:
            name = class_names[c] if class_names else str(c)
            need = 1 + (val_fraction > 0) + (test_fraction > 0)
            raise DataError(
                f"Class '{name}' has {n} item(s), too few to split into train/val/test",
                f"at least {need} items per class for val_fraction={val_fraction}, test_fraction={test_fraction}",
                "Add items to that class, remove the class, or set --val-fraction/--test-fraction to 0",
            )
        out["test"].extend(idx[:n_test])
        out["val"].extend(idx[n_test:n_test + n_val])
        out["train"].extend(idx[n_test + n_val:])
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


def sample_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Pick ``shots`` indices per class (all of a class that has fewer), seeded."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed + 7919)
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.extend(rng.choice(idx, size=min(shots, len(idx)), replace=False))
    return np.sort(np.asarray(keep, dtype=np.int64))


def grouped_split(
    labels: list[int] | np.ndarray,
    groups: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Split so that no group (speaker, patient, object…) is on two sides; stratified where possible.

    scikit-learn's ``StratifiedGroupKFold`` picks the folds: one fold of about ``test_fraction`` is the
    test split, then one fold of the rest of about ``val_fraction`` is val. With few groups a fold is
    at least one whole group, so the fractions are approximate.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}`` (sorted index arrays).
    """
    from sklearn.model_selection import StratifiedGroupKFold  # heavy: loaded on first use

    labels = np.asarray(labels)
    groups_arr = np.asarray(groups, dtype=object)
    out = {"train": np.arange(len(labels)), "val": np.zeros(0, np.int64), "test": np.zeros(0, np.int64)}

    def carve(idx: np.ndarray, fraction: float, salt: int) -> tuple[np.ndarray, np.ndarray]:
        n_groups = len(set(groups_arr[idx]))
        if n_groups < 2:
            raise DataError(f"Only {n_groups} group(s) left to split off {fraction:.0%} by group",
                            "at least 2 groups (e.g. speakers) for each held-out split",
                            "Use fewer held-out splits (--val-fraction 0 or --test-fraction 0), or a coarser grouping")
        k = int(min(n_groups, max(2, round(1 / fraction))))
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + salt)
        keep, held = next(splitter.split(np.zeros(len(idx)), labels[idx], groups_arr[idx]))
        return idx[keep], idx[held]

    rest = out["train"]
    if test_fraction > 0:
        rest, out["test"] = carve(rest, test_fraction, 0)
    if val_fraction > 0:
        rest, out["val"] = carve(rest, val_fraction / max(1e-9, 1 - test_fraction), 1)
    out["train"] = rest
    return {k: np.sort(v.astype(np.int64)) for k, v in out.items()}
