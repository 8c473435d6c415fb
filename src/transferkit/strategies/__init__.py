"""Transfer strategies: which parameters train, at which learning rate, when they unfreeze,
and how BatchNorm behaves in frozen parts.

Every strategy works for every backbone through the backbone contract (``stages()``). A run calls
:meth:`Strategy.prepare_backbone` before the head is attached and :meth:`Strategy.finish` before the
model is saved; the training loop calls :meth:`Strategy.prepare` once, :meth:`Strategy.param_groups`
once, then :meth:`Strategy.on_epoch_start` and :meth:`Strategy.train_mode` at the start of each epoch.
"""

from __future__ import annotations

from ..config import RunConfig
from ..errors import ConfigError
from . import _builtin, _contrastive  # noqa: F401  (register the built-in strategies, in this order)
from ._base import (
    _STRATEGIES,
    Strategy,
    apply_bn_policy,
    register_strategy,
    set_stages_trainable,
    set_trainable,
    strategies,
)
from ._contrastive import Contrastive, CosinePairs


def check_supported(task, strategy) -> None:
    """Refuse a strategy the task cannot train with, naming the registered strategies it can."""
    if task.supports(strategy):
        return
    able = [name for name, cls in _STRATEGIES.items() if task.supports(cls)]
    raise ConfigError(f"Strategy {strategy.name} does not apply to {task.title or task.name} ({task.unsupported})",
                      f"one of {', '.join(able)}", task.unsupported_fix)


def get_strategy(cfg: RunConfig) -> Strategy:
    """The run's own strategy object for ``cfg.strategy``; unknown names list the registered ones."""
    for cls in _STRATEGIES.values():
        args = cls.parse(cfg.strategy)
        if args is not None:
            return cls(cfg, *args)
    raise ConfigError(f"Unknown strategy '{cfg.strategy}'", f"one of {', '.join(_STRATEGIES)}",
                      "Run `transferkit train --help` for what each does")


__all__ = ["Contrastive", "CosinePairs", "Strategy", "apply_bn_policy", "check_supported", "get_strategy",
           "register_strategy", "set_stages_trainable", "set_trainable", "strategies"]
