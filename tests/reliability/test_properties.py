"""Property-based tests: the split and the metric functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transferkit.data import stratified_split
from transferkit.errors import DataError
from transferkit.evaluation import classification_metrics

counts = st.lists(st.integers(1, 30), min_size=2, max_size=6)
fractions = st.sampled_from([0.0, 0.1, 0.2, 0.3])


@settings(max_examples=150, deadline=None)
@given(counts=counts, vf=fractions, tf=fractions, seed=st.integers(0, 10**6))
def test_split_properties(counts, vf, tf, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    need = 1 + (vf > 0) + (tf > 0)
    if min(counts) < need:
        with pytest.raises(DataError):
            stratified_split(labels, vf, tf, seed)
        return
    try:
        parts = stratified_split(labels, vf, tf, seed)
    except DataError:
        # rounding can claim every item of a small class for val/test; then the error is right
        for n in counts:
            nv = max(1, round(n * vf)) if vf else 0
            nt = max(1, round(n * tf)) if tf else 0
            if n - nv - nt < 1:
                return
        raise
    allidx = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert sorted(allidx.tolist()) == list(range(len(labels)))  # a partition: disjoint, complete
    again = stratified_split(labels, vf, tf, seed)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)  # deterministic per seed
    for c in range(len(counts)):  # every class in train; in val/test whenever that fraction is > 0
        assert (labels[parts["train"]] == c).any()
        if vf:
            assert (labels[parts["val"]] == c).any()
        if tf:
            assert (labels[parts["test"]] == c).any()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_metrics_agree_with_sklearn(data):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    k = data.draw(st.integers(2, 5))
    n = data.draw(st.integers(1, 60))
    y = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    p = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    m = classification_metrics(y, p, [f"c{i}" for i in range(k)])
    present = sorted(set(y.tolist()))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, labels=present, average="macro", zero_division=0))
    assert m["macro_precision"] == pytest.approx(precision_score(y, p, labels=present, average="macro", zero_division=0))
    assert m["macro_recall"] == pytest.approx(recall_score(y, p, labels=present, average="macro", zero_division=0))
    assert m["confusion_matrix"] == confusion_matrix(y, p, labels=list(range(k))).tolist()
