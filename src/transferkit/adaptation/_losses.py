"""End-to-end adaptation while fine-tuning: each training step sees a source batch and a target batch; the
adaptation module (attached to the model while it trains, removed before it is saved) turns the features and
logits of both into one extra loss term, computed inside the model's forward so that several processes
all-reduce its gradients like any other.

- DANN (Ganin et al. 2016): a domain discriminator behind a gradient-reversal layer whose coefficient rises
  from 0 to 1 as 2 / (1 + exp(-20 p)) - 1 over training progress p (TLlib's warm start, scaled to the run).
- CDAN+E (Long et al. 2018): the discriminator sees the features conditioned on the class predictions (their
  outer product; a randomised multilinear map of 1,024 dimensions when it would exceed 4,096), each item
  weighted by 1 + exp(-entropy) so that confident predictions count more.
- MCC (Jin et al. 2020): the minimum class confusion on target predictions (temperature 2.5, entropy-weighted).
- self-training: cross-entropy on target predictions that are at least 90% confident (their own arg-max, no
  gradient through the pseudo-label), ramped in like DANN's coefficient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._methods import AdaptationMethod, get_method, register_method

CONFIDENT = 0.9  # self-training keeps pseudo-labels at or above this probability
MCC_TEMPERATURE = 2.5
MULTILINEAR_MAX = 4096  # CDAN's exact outer product up to this size, else the randomised map
RANDOM_DIM = 1024


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def ramp(progress: float) -> float:
    """The reversal coefficient's warm-up, 2 / (1 + exp(-20 p)) - 1 at progress p: TLlib's warm start (1,000 of
    its 20,000 iterations to reach 0.46) on a run of any length; 0.9 at 15% of training, 1 from about a third."""
    return 2.0 / (1.0 + math.exp(-20.0 * min(max(progress, 0.0), 1.0))) - 1.0


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + 1e-5)).sum(1)


class AdaptationTerm(nn.Module):
    """Base: keeps its step count (saved with checkpoints, so a resumed run continues the schedule)."""

    def __init__(self, total_steps: int):
        super().__init__()
        self.total_steps = max(1, total_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def progress(self) -> float:
        p = self.step.item() / self.total_steps
        if self.training:
            self.step += 1
        return p

    def forward(self, fs, ft, ls, lt) -> torch.Tensor:
        raise NotImplementedError


class DomainAdversarial(AdaptationTerm):
    """DANN (``conditional=False``) or CDAN+E (``conditional=True``)."""

    def __init__(self, dim: int, classes: int, total_steps: int, conditional: bool = False, width: int = 1024):
        super().__init__(total_steps)
        self.conditional = conditional
        self.randomised = conditional and dim * classes > MULTILINEAR_MAX
        if self.randomised:  # fixed random projections (Long et al.'s randomised multilinear map)
            self.register_buffer("rf", torch.randn(dim, RANDOM_DIM))
            self.register_buffer("rg", torch.randn(classes, RANDOM_DIM))
        in_dim = RANDOM_DIM if self.randomised else dim * classes if conditional else dim
        self.discriminator = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(0.5),
                                           nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, 1))

    def forward(self, fs, ft, ls, lt):
        coeff = ramp(self.progress())
        f = torch.cat([fs, ft]).float()
        weight = None
        if self.conditional:
            g = torch.cat([ls, lt]).float().softmax(1).detach()
            if self.randomised:
                h = (f @ self.rf) * (g @ self.rg) / math.sqrt(RANDOM_DIM)
            else:
                h = torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)
            w = 1.0 + torch.exp(-_entropy(g))
            ns = len(fs)
            weight = torch.cat([w[:ns] / w[:ns].sum(), w[ns:] / w[ns:].sum()]) * len(f) / 2
            f = h
        logits = self.discriminator(_Reverse.apply(f, coeff)).squeeze(1)
        domain = torch.cat([torch.ones(len(fs)), torch.zeros(len(ft))]).to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, domain, weight=weight)


class MinimumClassConfusion(AdaptationTerm):
    def forward(self, fs, ft, ls, lt):
        self.progress()
        p = (lt.float() / MCC_TEMPERATURE).softmax(1)
        w = 1.0 + torch.exp(-_entropy(p).detach())
        w = len(p) * w / w.sum()
        confusion = (p * w[:, None]).T @ p
        confusion = confusion / confusion.sum(1, keepdim=True).clamp_min(1e-12)
        return (confusion.sum() - confusion.trace()) / p.shape[1]


class SelfTraining(AdaptationTerm):
    def forward(self, fs, ft, ls, lt):
        coeff = ramp(self.progress())
        conf, pseudo = lt.detach().float().softmax(1).max(1)
        keep = (conf >= CONFIDENT).float()
        return coeff * (F.cross_entropy(lt.float(), pseudo, reduction="none") * keep).mean()


def make_term(method: str, dim: int, classes: int, total_steps: int) -> AdaptationTerm:
    """The training term of the method registered as ``method``."""
    return get_method(method).term(dim, classes, total_steps)


class EndToEnd(AdaptationMethod):
    """A term trained beside the task's loss on a (source, target) batch, with the published recipe."""

    while_training = recipe = True


@register_method
class DANN(EndToEnd):
    name = "dann"
    help = "end-to-end while training: domain discriminator behind gradient reversal"
    kind = "adversarial"
    trained_candidate = True
    conditional = False  # the discriminator sees the features alone

    def term(self, dim, classes, total_steps):
        return DomainAdversarial(dim, classes, total_steps, conditional=self.conditional)


@register_method
class CDAN(DANN):
    name = "cdan"
    help = "end-to-end while training: CDAN+E, discriminator conditioned on the predictions, entropy-weighted"
    conditional = True


@register_method
class SelfTrain(EndToEnd):
    name = "self-train"
    help = "end-to-end while training: cross-entropy on confident (≥ 0.9) target pseudo-labels"
    kind = "self-training"

    def term(self, dim, classes, total_steps):
        return SelfTraining(total_steps)


class PairModel(nn.Module):
    """What the loop trains on a (source, target) batch: both through the backbone and head, then the
    adaptation term; outputs the source logits and that term."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        m = self.model
        fs, ft = m.backbone(x["source"]), m.backbone(x["target"])
        # both domains through the head's body at once (a bottleneck's BatchNorm sees the mixed batch, as in
        # TLlib), and the term reads what the last layer reads
        z = m.head[:-1](torch.cat([fs, ft]))
        logits = m.head[-1](z)
        n = len(fs)
        return {"logits": logits[:n], "adapt": m.adapter(z[:n], z[n:], logits[:n], logits[n:])}


class PairObjective:
    """The task's loss on the source logits plus the adaptation term (its mean is logged as ``adapt_loss``)."""

    def __init__(self, task):
        self.task = task

    def loss(self, outputs, targets):
        return self.task.loss(outputs["logits"], targets) + outputs["adapt"]

    def step_stats(self, outputs, targets):
        return {**self.task.step_stats(outputs["logits"], targets), "adapt_loss": outputs["adapt"].detach() * len(targets)}

    def epoch_row(self, sums, seen):
        return self.task.epoch_row(sums, seen)
