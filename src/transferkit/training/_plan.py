"""A run's plan: everything resolved before its folder exists — the run's own task, strategy and adaptation hook,
the backbone (the data's default unless given), preprocessing and device — and how its steps read inputs."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..adaptation import adaptation_defaults, adaptation_for
from ..backbones import create_backbone, first_installed
from ..config import RUN_DEFAULTS, RunConfig, fill_defaults, resolve_precision
from ..data import LabelledData
from ..errors import ConfigError
from ..features import extract_features, make_loader, to_device
from ..modalities import modality_of
from ..strategies import check_supported, get_strategy
from ..tasks import get_task, inputs_of
from ._loop import seed_everything
from ._progress import progress_bar
from ._sharding import check_global_batch

log = logging.getLogger("transferkit")


@dataclass
class Plan:
    """What a run resolved before its folder exists: the run's own task, strategy and adaptation hook, its
    backbone, preprocessing and device. Helpers read inputs through it the same way in every step."""

    cfg: RunConfig
    data: LabelledData
    task: Any
    modality: Any
    backbone: Any
    strategy: Any
    adapt: Any
    train_tf: Any
    eval_tf: Any
    data_config: dict
    device: torch.device

    @property
    def eval_split(self) -> str:
        return self.data.eval_split

    @property
    def select_on_val(self) -> bool:
        return self.eval_split == "test" and len(self.data.splits_["val"]) > 0 and self.cfg.select == "val"

    @property
    def nhwc(self) -> bool:
        return self.modality.channels_last(self.cfg)

    def dataset(self, items, transform=None, **fill):
        return inputs_of(self.task, self.modality).dataset(self.backbone, items, transform or self.eval_tf, self.cfg,
                                                           **fill)

    def loader(self, items):
        return make_loader(self.dataset(items), self.cfg.batch_size * 2, self.cfg.workers)

    def held_loader(self, items, name: str):
        """A loader over ``items`` that is read many times: decoded once, held where the modality can."""
        ds = epoch_dataset(self, items, self.eval_tf, name)
        return make_loader(ds, self.cfg.batch_size * 2, self.cfg.workers, collate_fn=getattr(ds, "collate_fn", None))

    def move(self, x):
        return to_device(x, self.device, self.nhwc)

    def features(self, net, items, name: str, cache: bool = True) -> np.ndarray:
        """Frozen features of ``items`` through ``net`` (cached on disk with ``cache``), with a progress bar."""
        with progress_bar(f"features {name}", len(items)) as update:
            return extract_features(
                net, items, self.eval_tf, self.cfg.batch_size * 2, self.cfg.cache_dir, self.cfg.workers, self.device,
                progress=update, dataset=self.modality.dataset(net, items, self.eval_tf, self.cfg),
                precision=self.cfg.precision, channels_last=self.nhwc, shard=True, cache=cache,
                preprocessing=self.modality.feature_key(self.eval_tf, self.data_config))


def plan_run(cfg: RunConfig, data: LabelledData, target) -> Plan:
    """Resolve the run before anything is written: task, modality, backbone, strategy, adaptation, defaults and
    preprocessing. Bad names and combinations fail here, before the data is scanned where possible. The plan's
    ``cfg`` is the run's own copy, resolved here and then read-only (the caller's config is left as it was)."""
    cfg = copy.deepcopy(cfg)
    get_strategy(cfg)  # fail on a bad strategy or task name before any work (--strategy auto is resolved by fit)
    task = get_task(cfg.task)  # the class: the run's own object is built once the data and backbone are known
    modality = modality_of(data)
    cfg.modality = modality.name
    if task.modalities is not None and modality.name not in task.modalities:
        raise ConfigError(f"Task {task.name} does not read {modality.name} data", f"{', '.join(task.modalities)} data",
                          "Pass data of that kind, or choose another --task")
    if cfg.backbone is None:
        cfg.backbone = default_backbone(task, modality)
        cfg.extra["backbone_chosen"] = f"default for {task.name} on {modality.name} data"  # saved in config.yaml
        log.info("backbone: %s (the default for %s on %s data; --backbone chooses another)", cfg.backbone, task.name,
                 modality.name)
    seed_everything(cfg.seed)  # random-init backbones and new heads start from the seed
    backbone = create_backbone(cfg.backbone, arch=cfg.arch, max_length=cfg.max_length)  # before the scan: fail fast
    modality.check_backbone(backbone, cfg.backbone)
    data.setup()
    strategy = get_strategy(cfg)
    check_supported(task, strategy)
    fill_run_defaults(cfg, {**modality.defaults, **backbone.train_defaults, **task.train_defaults(cfg, backbone),
                            **strategy.defaults, **adaptation_defaults(cfg, strategy)}, len(data.splits_["train"]))
    adapt = adaptation_for(cfg, modality, task, data, backbone, strategy, target)
    strategy = adapt.wrap(strategy, len(data.splits_["train"]), backbone.num_features, len(data.classes_))
    if strategy.trains_backbone:
        check_global_batch(cfg.batch_size)
    backbone = strategy.prepare_backbone(backbone)
    train_tf, eval_tf, data_config = inputs_of(task, modality).pipeline(backbone, cfg, data)
    task = task.for_run(cfg, data, backbone, data_config)
    device = torch.device("cuda" if torch.cuda.is_available() and not cfg.cpu else "cpu")
    cfg.precision = resolve_precision(cfg.precision, device, backbone.cpu_bf16)
    return Plan(cfg.freeze(), data, task, modality, backbone, strategy, adapt, train_tf, eval_tf, data_config, device)


#: the epochs a run trains for when neither the user nor a plug-in says (the rest: config.RUN_DEFAULTS)
EPOCHS = 5


def fill_run_defaults(cfg: RunConfig, defaults: dict, n_train: int) -> None:
    """Settings the user left unset, from the plug-ins' ``defaults``. A plug-in may ask for a number of optimiser
    ``steps`` rather than epochs: the epochs are then those that give about that many steps at this batch size on
    this much training data (at least 1), so small and large data sets both get a schedule that fits."""
    defaults = dict(defaults)
    steps = defaults.pop("steps", None)
    fill_defaults(cfg, {**RUN_DEFAULTS, **defaults})
    if cfg.epochs is None:
        per_epoch = max(1, -(-n_train // cfg.batch_size))
        cfg.epochs = max(1, round(steps / per_epoch)) if steps else EPOCHS
        if steps:
            log.info("epochs: %d (about %d steps of batch %d over %d training items; --epochs sets them)", cfg.epochs,
                     steps, cfg.batch_size, n_train)


def default_backbone(task, modality) -> str:
    """The backbone a run gets without ``--backbone``: the task's choice, else the modality's (the first installed)."""
    candidates = task.default_backbones or modality.default_backbones
    chosen = first_installed(candidates)
    if chosen is None:
        raise ConfigError(f"No --backbone given and none of the defaults for {task.name} on {modality.name} data is "
                          f"installed ({', '.join(candidates)})", "--backbone source:name",
                          "pip install 'transferkit[all]', or pass --backbone (`transferkit models` lists them)")
    return chosen


def epoch_dataset(plan: Plan, items, transform, split: str):
    """A dataset read every epoch: its inputs are decoded once, into the in-memory cache where the modality has one."""
    with progress_bar(f"decode {split}", len(items)) as update:
        ds = plan.dataset(items, transform, fill=True, progress=update)
    held = [h for h in (getattr(ds, "held", None) or []) if h is not None]
    if held:
        log.info("input cache: %d/%d %s inputs held decoded (%.0f MiB)", len(held), len(items), split,
                 sum(h.numel() * h.element_size() for h in held) / 2**20)
    return ds
