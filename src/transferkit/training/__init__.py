"""Training: the loop, its callbacks, and a whole run from data to run folder."""

from ._callbacks import BestEpoch, Callback, ChannelsLast, Checkpoint, EpochHook, EpochScores, L2SP, Validate
from ._fit import Run, load_run
from ._loop import train_loop
from ._plan import default_backbone
from ._start import fit

__all__ = ["BestEpoch", "Callback", "ChannelsLast", "Checkpoint", "EpochHook", "EpochScores", "L2SP", "Run",
           "Validate", "default_backbone", "fit", "load_run", "train_loop"]
