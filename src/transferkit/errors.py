"""User-facing errors: what was wrong, what was expected, how to fix it."""

from __future__ import annotations


class TransferkitError(Exception):
    """An error caused by the user's input, reported as one clear line.

    Args:
        what: what was wrong (names the path, value or key).
        expected: what transferkit expected instead.
        fix: how the user can fix it.
    """

    def __init__(self, what: str, expected: str | None = None, fix: str | None = None):
        self.what, self.expected, self.fix = what, expected, fix
        parts = [what.rstrip(".") + "."]
        if expected:
            parts.append(f"Expected {expected.rstrip('.')}.")
        if fix:
            parts.append(fix.rstrip(".") + ".")
        super().__init__(" ".join(parts))


class DataError(TransferkitError):
    """Bad dataset: missing folder, too few classes or images, bad CSV."""


class BackboneError(TransferkitError):
    """Unknown backbone, weights that cannot be loaded, offline hub access."""


class ConfigError(TransferkitError):
    """Unknown config keys or invalid values."""


class RunFolderError(TransferkitError):
    """A path that is not a (complete) transferkit run folder."""


class TrainingError(TransferkitError):
    """Training went wrong in a way the settings explain (a loss that became NaN or infinite)."""
