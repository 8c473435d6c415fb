from __future__ import annotations

import pytest
from torch import nn

from transferkit.backbones import create_backbone
from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.heads import TransferModel, build_head
from transferkit.strategies import get_strategy


def _model(arch="test_efficientnet"):
    b = create_backbone(f"random:{arch}")
    return TransferModel(b, build_head("linear", b.num_features, 3))


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_linear_probe_freezes_backbone_and_bn_stays_eval():
    m = _model()
    s = get_strategy(RunConfig(strategy="linear-probe"))
    s.prepare(m)
    s.train_mode(m)
    assert _trainable(m) == {n for n, _ in m.head.named_parameters(prefix="head")}
    bns = [x for x in m.backbone.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(bn.training for bn in bns)


def test_partial_trains_only_last_stages_and_bn_policy():
    m = _model()
    stages = m.backbone.stages()
    s = get_strategy(RunConfig(strategy="partial:2"))
    s.prepare(m)
    s.train_mode(m)
    expected = {f"backbone.{n}" for st in stages[-2:] for n in st} | {"head.0.weight", "head.0.bias"}
    assert _trainable(m) == expected
    frozen_bn = m.backbone.model.bn1  # stem BatchNorm: frozen → eval under every policy
    trainable_bn = m.backbone.model.bn2  # last BatchNorm: trains
    assert not frozen_bn.training and not trainable_bn.training  # auto = eval for a pretrained backbone
    get_strategy(RunConfig(strategy="partial:2", bn="train")).train_mode(m)
    assert not frozen_bn.training and trainable_bn.training


def test_scratch_uses_batch_statistics():
    m = _model()
    s = get_strategy(RunConfig(strategy="scratch"))
    s.prepare(m)
    s.train_mode(m)
    assert all(x.training for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm))
    with pytest.raises(ConfigError, match="partial:99"):
        get_strategy(RunConfig(strategy="partial:99")).prepare(_model())


def test_finetune_lrs_with_layer_decay():
    m = _model()
    cfg = RunConfig(strategy="finetune", lr=1.0, backbone_lr_mult=0.1, layer_decay=0.5)
    groups = get_strategy(cfg).param_groups(m)
    lrs = {g["name"]: g["lr"] for g in groups}
    n = len(m.backbone.stages())
    assert lrs["head"] == 1.0
    assert lrs[f"backbone.stage{n - 1}"] == pytest.approx(0.1)
    assert lrs["backbone.stage0"] == pytest.approx(0.1 * 0.5 ** (n - 1))
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(m.parameters()))


def test_gradual_unfreezes_after_freeze_epochs():
    m = _model()
    s = get_strategy(RunConfig(strategy="gradual", freeze_epochs=2))
    s.prepare(m)
    s.on_epoch_start(m, 0)
    assert not any(p.requires_grad for p in m.backbone.parameters())
    s.on_epoch_start(m, 2)
    assert all(p.requires_grad for p in m.backbone.parameters())


def test_unknown_strategy_lists_choices():
    with pytest.raises(ConfigError, match="Unknown strategy 'fine-tune'.*linear-probe"):
        get_strategy(RunConfig(strategy="fine-tune"))
