"""Bad inputs for ``transferkit tune``: each one clear error before any trial runs."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, make_folder

FLAGS = ["--backbone", TINY, "--image-size", "32", "--workers", "0"]


def _tune(space: str | None = None, *more: str):
    def build(tmp: Path, run: Path) -> list[str]:
        data = make_folder(tmp / "data", classes=2, per_class=8)
        extra = []
        if space is not None:
            (tmp / "space.yaml").write_text(space)
            extra = ["--space", str(tmp / "space.yaml")]
        return ["tune", str(data), *FLAGS, *extra, *more, "--output", str(tmp / "runs")]
    return build


def cases(Case) -> list:
    return [
        Case("tune_space_contradictory", "a --space range with low above high", "error", "low ≤ high",
             _tune("lr: {low: 0.1, high: 0.001, log: true}\n")),
        Case("tune_space_empty_choices", "a --space with an empty list of choices", "error", "no values to choose from",
             _tune("augment: []\n")),
        Case("tune_space_unknown_key", "a --space naming a setting that does not exist", "error", "unknown setting",
             _tune("run.learning_rate: {low: 0.001, high: 0.1}\n")),
        Case("tune_space_empty_file", "an empty --space file", "error", "empty or not a mapping", _tune("")),
        Case("tune_nothing_to_search", "every setting fixed (one strategy that reads nothing searched)", "error",
             "nothing to search", _tune(None, "--strategies", "linear-probe")),
        Case("tune_storage_unreachable", "a --storage URL that cannot be used", "error", "cannot be used",
             _tune(None, "--storage", "sqlite:////no/such/dir/study.db")),
        Case("tune_zero_trials", "--trials 0", "error", "runs nothing", _tune(None, "--trials", "0")),
        Case("track_unknown", "train --track tensorbored (a misspelt tracker)", "error", "Unknown --track",
             lambda tmp, run: ["train", str(make_folder(tmp / "data", classes=2, per_class=8)), *FLAGS, "--epochs",
                               "1", "--track", "tensorbored", "--output", str(tmp / "runs")]),
        Case("track_not_installed", "train --track wandb where wandb is not installed (the run goes on)", "warn",
             "the run goes on", lambda tmp, run: ["train", str(make_folder(tmp / "data", classes=2, per_class=8)),
                                                  *FLAGS, "--epochs", "1", "--strategy", "finetune", "--track",
                                                  "wandb", "--output", str(tmp / "runs")]),
        Case("auto_budget_zero", "train --budget 0 (no time for any candidate)", "error", "seconds ≥ 1",
             lambda tmp, run: ["train", str(make_folder(tmp / "data", classes=2, per_class=8)), *FLAGS, "--budget",
                               "0", "--output", str(tmp / "runs")]),
        Case("auto_too_few_to_choose", "train with auto on a given split with 1 training item per class (none can "
             "be held out to choose)", "warn", "too few training items to hold some out",
             lambda tmp, run: ["train", str(make_folder(tmp / "data", classes=2, per_class=2, split=True)), *FLAGS,
                               "--epochs", "1", "--output", str(tmp / "runs")]),
        Case("tune_unknown_pruner", "--pruner sometimes", "error", "Unknown --pruner", _tune(None, "--pruner", "sometimes")),
    ]
