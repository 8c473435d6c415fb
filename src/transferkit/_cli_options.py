"""The flags of the commands that train (train, compare, tune), made from the options every plug-in declares
(``config.Option``). None means "not given": the config file, then the defaults, apply."""

from __future__ import annotations

import inspect
from typing import Optional

import typer

from .config import options
from .strategies import strategies
from .tasks import tasks


def _option_help(o, listed: dict[str, str]) -> str:
    """The flag's help: the declaration's (or ``listed``'s, for the names a registry lists), the choices, the
    default."""
    text = listed.get(o.name) or o.help
    if o.choices and " | " not in text:
        text = f"{text}: {' | '.join(map(str, o.choices))}" if text else " | ".join(map(str, o.choices))
    if o.default not in (None, "", False) and o.kind is not dict and "default" not in text:
        text = f"{text} (default {o.default})" if text else f"default {o.default}"
    return text


def _train_options() -> dict[str, tuple]:
    listed = {"strategy": "auto (default) | " + " | ".join(strategies()), "task": " | ".join(tasks())}
    return {o.name: (Optional[o.kind], typer.Option(None, help=_option_help(o, listed),
                                                    rich_help_panel=f"{o.owner} options",
                                                    metavar="" if o.kind is bool else None))
            for o in options().values() if o.cli}


TRAIN_OPTIONS = _train_options()


def settings_of(local: dict) -> dict:
    """The declared options a command was given (those left out are None)."""
    return {k: local[k] for k in TRAIN_OPTIONS if local.get(k) is not None}


def with_train_options(fn):
    """Give ``fn`` the shared training options as keyword parameters (typer reads the signature)."""
    if not hasattr(fn, "own_parameters"):  # the command's own parameters, before any option was added
        fn.own_parameters = [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]
    params = list(fn.own_parameters)
    own = {p.name for p in params}
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
               for k, (annotation, default) in TRAIN_OPTIONS.items() if k not in own]
    fn.__signature__ = inspect.Signature(params)
    return fn


def declared_flags(commands) -> None:
    """Remake the flags from every option declared so far and give them to ``commands`` again."""
    TRAIN_OPTIONS.clear()
    TRAIN_OPTIONS.update(_train_options())
    for command in commands:
        with_train_options(command)
