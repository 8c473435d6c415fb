"""The one contract every backbone meets, whatever its source."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import torch
from torch import nn


class Backbone(nn.Module):
    """A pretrained feature extractor: inputs → pooled features of size ``num_features``.

    Args:
        model: the network with its classifier removed (a timm model built with ``num_classes=0``).
        spec: what rebuilds the architecture without weights (saved in ``model.json``).
        pretrained_cfg: input size, mean, std, crop_pct, interpolation of the pretrained weights.
        source_head: the source task's classifier (e.g. ImageNet), kept aside for LEEP/NCE.
        name: the ``source:name`` the user asked for.
    """

    modality = "image"
    #: training defaults this family needs whatever the data (transformers fine-tune at small rates)
    train_defaults: dict = {}
    #: ``--precision auto`` runs it in bf16 on CPUs with native bf16 (worth it for matmul-bound transformers)
    cpu_bf16 = False

    def __init__(self, model: nn.Module, spec: dict[str, Any], pretrained_cfg: dict[str, Any],
                 source_head: nn.Module | None = None, name: str = ""):
        super().__init__()
        self.model = model
        self.spec = dict(spec)
        self.pretrained_cfg = dict(pretrained_cfg)
        self.name = name or spec.get("arch", "")
        # Kept outside the module tree so it is neither trained nor saved with the new model.
        self.__dict__["source_head"] = source_head

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features (for a CNN: the last stage's map, B × C × H × W), as timm's ``forward_features``."""
        return self.model.forward_features(x)

    def feature_info(self) -> list[dict]:
        """Channels, stride and module of each stage's output, input → output (timm's ``feature_info``):
        what a dense head (an FPN for detection) attaches to."""
        info = getattr(self.model, "feature_info", None) or []
        return [{"num_chs": int(f["num_chs"]), "reduction": int(f["reduction"]), "module": f"model.{f['module']}"}
                for f in info]

    def stages(self) -> list[list[str]]:
        """Parameter names grouped input → output (stem, stages…, head convs), for freezing and LR decay.

        Names are relative to this module (they start with ``model.``).
        """
        from timm.models import group_parameters  # heavy: loaded on first use

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{n}" for n in names] for _, names in sorted(groups.items())]

    def fresh(self) -> "Backbone":
        """The same architecture with random weights (the scratch baseline)."""
        import timm  # heavy: loaded on first use

        model = timm.create_model(self.spec["arch"], pretrained=False, num_classes=0)
        return Backbone(model, self.spec, self.pretrained_cfg, None, f"random:{self.spec['arch']}")

    def save_extra(self, run_dir) -> None:
        """Save what rebuilding needs beyond the weights (text backbones: config and tokenizer)."""

    def weights_hash(self) -> str:
        """A content hash of the weights (part of the feature-cache key)."""
        h = hashlib.sha1(self.spec.get("arch", "").encode())
        for k, v in self.model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def copy(self) -> "Backbone":
        new = copy.deepcopy(self)
        new.__dict__["source_head"] = self.source_head
        return new
