"""Minimum class confusion (Jin et al. 2020), the one method that works both ways: end to end while fine-tuning (a
term on the target predictions of every batch) and on a probe (the logistic head refined on the cached features)."""

from __future__ import annotations

from ._feature_level import fit_mcc_probe
from ._losses import EndToEnd, MinimumClassConfusion
from ._methods import register_method


@register_method
class MCC(EndToEnd):
    name = "mcc"
    help = ("minimum class confusion on target predictions: end-to-end while fine-tuning; with linear-probe, the "
            "logistic head refined on the cached features")
    kind = "output-level"
    on_probe = probe_candidate = trained_candidate = guarded = True

    def term(self, dim, classes, total_steps):
        return MinimumClassConfusion(total_steps)

    def fit_probe(self, task, model, fs, ys, ft, cfg) -> dict:
        return fit_mcc_probe(task, model, fs, ys, ft, cfg)
