"""Classification heads on pooled features, and the backbone + head model."""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError


def build_head(spec: str, in_features: int, num_classes: int, dropout: float = 0.2) -> nn.Module:
    """``linear`` → Linear(D, N); ``mlp:W`` → Linear(D, W), ReLU, Dropout, Linear(W, N); ``bottleneck:W`` →
    Linear(D, W), BatchNorm1d(W), ReLU, Linear(W, N) (the bottleneck adaptation terms read)."""
    if spec == "linear":
        return nn.Sequential(nn.Linear(in_features, num_classes))
    if spec.startswith("mlp:") and spec[4:].isdigit() and int(spec[4:]) > 0:
        width = int(spec[4:])
        return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(width, num_classes))
    if spec.startswith("bottleneck:") and spec[11:].isdigit() and int(spec[11:]) > 0:  # TLlib's adaptation head
        width = int(spec[11:])
        return nn.Sequential(nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(),
                             nn.Linear(width, num_classes))
    raise ConfigError(f"Unknown head '{spec}'", "linear, mlp:<width> or bottleneck:<width>, e.g. mlp:256")


class TransferModel(nn.Module):
    """A pretrained backbone and a new head: inputs → class logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x) -> torch.Tensor:
        return self.head(self.backbone(x))
