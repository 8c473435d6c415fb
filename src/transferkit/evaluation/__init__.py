"""Metrics and reports."""

from ._metrics import classification_metrics, format_metrics

__all__ = ["classification_metrics", "format_metrics"]
