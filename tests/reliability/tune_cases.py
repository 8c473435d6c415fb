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


def _resumed_on_other_data(tmp: Path, run: Path) -> list[str]:
    """A study of one trial on data A, then --resume of the same study on data B."""
    from transferkit import tune

    a = make_folder(tmp / "a", classes=2, per_class=8)
    tune(str(a), trials=1, output=tmp / "studies", name="study", backbone=TINY, image_size=32, workers=0, epochs=1,
         candidates=["finetune"])
    b = make_folder(tmp / "b", classes=2, per_class=9, seed=1)
    return ["tune", str(b), *FLAGS, "--epochs", "1", "--strategies", "finetune", "--output", str(tmp / "studies"),
            "--name", "study", "--resume"]


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
        Case("tune_space_list_for_range", "a --space giving words where numbers go (epochs: [two, three])", "error",
             "which a run refuses", _tune("epochs: [two, three]\n")),
        Case("tune_space_infinite_high", "a --space range up to .inf", "error", "finite numbers",
             _tune("lr: {low: 0.001, high: .inf}\n")),
        Case("tune_space_batch_over_max", "a --space batch size above the option's maximum", "error",
             "batch_size", _tune("batch_size: [8, 1000000]\n")),
        Case("tune_space_negative_epochs", "a --space range of negative epochs", "error", "epochs",
             _tune("epochs: {low: -3, high: 2}\n")),
        Case("tune_space_fixed_invalid", "a --space fixing an invalid value (augment: heavy)", "error",
             "augment", _tune("augment: heavy\nlr: {low: 0.001, high: 0.01}\n")),
        Case("tune_space_range_for_choice", "a --space range for a setting of named choices", "error",
             "list of choices", _tune("augment: {low: 1, high: 3}\n")),
        Case("tune_space_key_twice", "a --space naming lr and run.lr", "error", "names lr twice",
             _tune("lr: {low: 0.001, high: 0.01}\nrun.lr: {low: 0.01, high: 0.1}\n")),
        Case("tune_timeout_nan", "tune --timeout nan", "error", "--timeout", _tune(None, "--timeout", "nan")),
        Case("tune_timeout_inf", "tune --timeout inf", "error", "--timeout", _tune(None, "--timeout", "inf")),
        Case("tune_resume_other_data", "tune --resume of a study on other data", "error",
             "was run on other data or settings", _resumed_on_other_data),
        Case("tune_unknown_pruner", "--pruner sometimes", "error", "Unknown --pruner", _tune(None, "--pruner", "sometimes")),
    ]
