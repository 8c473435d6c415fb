"""The contract of an adaptation method (``--adapt NAME``) and its registry, as strategies have theirs: each method
is one class, in one module, that declares its options, its kind and where it works, and overrides the hooks it
needs. The registry holds the classes; a run gets its own object, which keeps no run state (the run's
:class:`~transferkit.adaptation.Adaptation` does). Nothing outside a method's class compares method names.

The built-in methods: ``none`` here; ``auto``, CORAL, SA and OT on cached features (``_feature_level``); AdaBN
(``_streams``); DANN, CDAN and self-training in the loop (``_losses``); MCC, on either (``_mcc``)."""

from __future__ import annotations

from ..config import declare
from ..errors import ConfigError

_METHODS: dict[str, type["AdaptationMethod"]] = {}


class AdaptationMethod:
    """One way of adapting to unlabelled target data.

    Declarations (class attributes) say where the method works; hooks (methods with working defaults) do it.
    """

    name = ""
    help = ""
    #: what it changes: baseline | search | feature-level | statistics | adversarial | output-level | self-training
    kind = ""
    #: its own settings (``config.Option``), declared when it is registered
    options: tuple = ()
    #: it adapts a probe: a head fitted on the backbone's cached frozen features (:meth:`fit_probe`)
    on_probe = False
    #: it adapts end to end in the loop: a term on a (source, target) batch (:meth:`term`)
    while_training = False
    #: a run that fine-tunes with it follows the published recipe (``adaptation.RECIPE``)
    recipe = False
    #: among ``--adapt auto``'s heads on the probe / its trained runs
    probe_candidate = False
    trained_candidate = False
    #: a user's choice of it on a probe is checked against the plain probe without labels (SND)
    guarded = False
    #: it changes the model toward the target (the source-only baseline does not: it needs no --target)
    adapts = True
    #: it chooses among the other methods (``auto``): never a candidate of a comparison's label-free choice itself
    searches = False

    def compatible(self, strategy) -> bool:
        """Whether it can run with ``strategy`` (a strategy class or object)."""
        probe = bool(strategy.probe_first and not strategy.trains_backbone)
        trains = bool(strategy.trains_backbone and not strategy.probe_after)
        return self.on_probe and probe or self.while_training and trains

    def check(self, cfg, strategy, backbone) -> None:
        """Refuse what cannot work with this strategy, backbone or these settings (a ConfigError)."""

    def fit_probe(self, task, model, fs, ys, ft, cfg) -> dict | None:
        """The probe head fitted with the method on source features ``fs`` (labels ``ys``) and target features ``ft``:
        ``{"info": probe info, "mapped": (source, target) features as the head reads them, "report": {…} for the
        run's adaptation record}``; None: the task's plain probe."""
        return None

    def term(self, dim: int, classes: int, total_steps: int):
        """The loss term (an ``AdaptationTerm``) trained beside the task's loss, reading ``dim`` features."""
        raise NotImplementedError(f"--adapt {self.name} has no training term")

    def before_training(self, adaptation, run) -> None:
        """Once the model is built (``adaptation``: the run's hook and its state; ``run``: the run's plan)."""

    def after_training(self, adaptation, run, model) -> None:
        """After the last epoch and the probe, before the target is scored."""


def register_method(cls: type[AdaptationMethod]) -> type[AdaptationMethod]:
    """Class decorator: make ``cls`` available as ``--adapt cls.name`` and declare its options."""
    if not cls.name or cls.name in _METHODS:
        raise ValueError(f"adaptation method {cls.name!r} has no name or is registered twice")
    _METHODS[cls.name] = cls
    declare(f"adaptation {cls.name}", *cls.options)
    return cls


def methods() -> dict[str, type[AdaptationMethod]]:
    """Every registered method class by name, in registration order."""
    return dict(_METHODS)


def get_method(name: str) -> AdaptationMethod:
    """A fresh object of the method registered as ``name``."""
    if name not in _METHODS:
        raise ConfigError(f"Unknown --adapt '{name}'", f"one of {', '.join(_METHODS)}")
    return _METHODS[name]()


def candidates(which: str) -> tuple[str, ...]:
    """``--adapt auto``'s candidates: ``probe`` (heads on cached features) or ``trained`` (one run each)."""
    return tuple(n for n, cls in _METHODS.items() if getattr(cls, f"{which}_candidate"))


@register_method
class SourceOnly(AdaptationMethod):
    name = "none"
    help = "source only: the baseline every method is measured against (the target is still scored)"
    kind = "baseline"
    adapts = False
    recipe = probe_candidate = trained_candidate = True

    def compatible(self, strategy) -> bool:
        return True
