"""The `[alerts]` table of the backend's TOML file."""

import pytest

from backend.cli import _parser, build_config


def _config(tmp_path, text: str):
    path = tmp_path / "backend.toml"
    path.write_text(text)
    return build_config(_parser().parse_args(["--config", str(path)]))


def test_alert_rules_from_toml(tmp_path):
    c = _config(tmp_path, """
alert_timer_s = 2
[alerts.overspeed]
limit_kmh = 80
min_duration_s = 5
[[alerts.signal]]
name = "oil-hot"
signal = "EngOilTemp1"
above = 120
duration_s = 15
[alerts.stale]
enabled = false
""")
    rules = c.alert_rules()
    assert (rules.overspeed.limit_kmh, rules.overspeed.min_duration_s) == (80, 5)
    assert [(s.name, s.signal, s.threshold, s.above) for s in rules.signals] == [
        ("oil-hot", "EngOilTemp1", 120.0, True)]
    assert rules.stale is None and rules.offline.after_s == 600
    assert c.alert_timer_s == 2


def test_defaults_without_a_table(tmp_path):
    rules = _config(tmp_path, 'db = "sqlite:///tmp/x.db"\n').alert_rules()
    assert rules.overspeed.limit_kmh == 90 and len(rules.signals) == 3


@pytest.mark.parametrize("text", ["[alerts.overspeed]\nlimit = 80\n",
                                  "[alerts.offline]\nafter_s = -1\n",
                                  "[alerts.bogus]\nx = 1\n", "alert_timer_s = 0\n"])
def test_bad_tables_fail_at_start_naming_the_key(tmp_path, text):
    with pytest.raises(ValueError) as err:
        _config(tmp_path, text)
    assert any(word in str(err.value) for word in ("limit", "after_s", "bogus", "alert_timer_s"))


def test_the_documented_example_is_valid_and_shows_the_defaults():
    import re
    import tomllib
    from pathlib import Path

    from backend.alerts.rules import RuleSet, parse_rules

    doc = (Path(__file__).resolve().parents[4] / "docs" / "configuration.md").read_text()
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[alerts." in b]
    rules = parse_rules(tomllib.loads(block)["alerts"])
    defaults = RuleSet()
    assert (rules.overspeed, rules.geofence, rules.stale, rules.offline) == (
        defaults.overspeed, defaults.geofence, defaults.stale, defaults.offline)
    assert rules.signals == defaults.signals[:1]  # the example gives only coolant-high
