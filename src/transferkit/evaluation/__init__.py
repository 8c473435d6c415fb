"""Metrics, their intervals and tests, plots, and how they are written."""

from . import plots
from ._format import gain_label, gain_text, gained_metrics, interval_text, kpis, mcnemar_text, mean_std
from ._intervals import accuracy_values, crossed_interval, dominant_source, macro_f1_values, mcnemar, paired_lower
from ._metrics import classification_metrics, deep_embedded_validation, format_metrics, soft_neighbourhood_density

__all__ = ["accuracy_values", "classification_metrics", "crossed_interval", "dominant_source", "format_metrics",
           "gain_label", "gain_text", "gained_metrics", "interval_text", "kpis", "macro_f1_values", "mcnemar", "mcnemar_text",
           "deep_embedded_validation", "mean_std", "paired_lower", "soft_neighbourhood_density",
           "plots"]
