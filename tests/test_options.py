"""Options belong to their plug-in: one declaration gives the flag, the config-file key, validation and the saved
config; a strategy registered in one place is offered everywhere."""

from __future__ import annotations

import sys

import pytest
import yaml

from transferkit import config as config_module
from transferkit import strategies as strategies_module
from transferkit.config import Option, options, resolve_config
from transferkit.errors import ConfigError
from transferkit.strategies import Strategy, check_supported, get_strategy, register_strategy, strategies
from transferkit.tasks import get_task


@pytest.fixture
def halfway():
    """A throwaway strategy with one option, registered for the test and removed after it."""

    @register_strategy
    class Halfway(Strategy):
        name = "halfway"
        description = "the head, then half of the backbone"
        options = (Option("halfway_point", float, 0.5, "halfway: the fraction of the epochs before unfreezing",
                          low=0.0, high=1.0, wanted="a fraction in [0, 1]"),)

    yield Halfway
    strategies_module._STRATEGIES.pop("halfway")
    config_module._OPTIONS.pop("halfway_point")
    from transferkit import cli

    cli._declared_flags()  # the command's flags without it again


def test_a_declared_option_is_a_setting_with_its_type_range_and_saved_value(halfway, tmp_path):
    assert options()["halfway_point"].owner == "strategy halfway"
    cfg = resolve_config({"strategy": "halfway", "halfway_point": "0.25"})
    assert cfg.halfway_point == 0.25 and isinstance(get_strategy(cfg), halfway)
    assert resolve_config({}).halfway_point == 0.5  # the declared default
    with pytest.raises(ConfigError, match="halfway_point=2.0 is out of range. Expected a fraction in"):
        resolve_config({"halfway_point": 2})
    with pytest.raises(ConfigError, match="halfway_point='most' is not a number"):
        resolve_config({"halfway_point": "most"})
    cfg.save(tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["halfway_point"] == 0.25
    again = resolve_config(config_file=tmp_path / "config.yaml")  # a saved config reads back
    assert again.halfway_point == 0.25 and again.strategy == "halfway"


def test_a_registered_strategy_reaches_the_command_line_and_every_list(halfway, monkeypatch, capsys):
    from transferkit import cli

    monkeypatch.setattr(sys, "argv", ["transferkit", "train", "--help"])
    cli.main()  # --help returns 0
    out = capsys.readouterr().out
    assert "--halfway-point" in out and "halfway" in out
    assert "halfway" in strategies()
    check_supported(get_task("classify"), halfway)  # it trains something: classification accepts it
    with pytest.raises(ConfigError, match=r"one of .*halfway"):
        get_strategy(resolve_config({"strategy": "quarterway"}))


def test_an_option_name_belongs_to_one_plugin():
    with pytest.raises(ValueError, match="declared by task detect and strategy rival"):
        config_module.declare("strategy rival", Option("score_threshold", float, 0.1))
