"""The backend's default signal names are the shipped J1939 DBC's, in the parameter groups the
SAE J1939-71 tables give them (PGN and SPN written here from the public tables, not read from
the code under test), and the web app's defaults are the same names."""

from __future__ import annotations

import re
from dataclasses import fields

from agent.can.dbcload import BUILTIN_DIR, load_dbc
from agent.can.decoder import pgn_of
from agent.can.j1939text import DI_SIGNALS, PGN_DI
from backend.alerts.rules import DEFAULT_SIGNALS as ALERT_SIGNALS
from backend.driving.events import DEFAULT_SIGNALS
from backend.maintenance.config import parse_maintenance
from geostream.signalnames import NAMES, SignalNames
from hil.drives import SIGNALS as DRIVE_SIGNALS
from tests.conftest import REPO

# parameter → (PGN, SPN) per SAE J1939-71
J1939 = {
    "engine_speed": (61444, 190), "wheel_speed": (65265, 84), "fuel_rate": (65266, 183),
    "fuel_level": (65276, 96), "odometer": (65217, 917), "engine_hours": (65253, 247),
    "battery": (65271, 168), "ambient": (65269, 171), "coolant": (65262, 110),
    "oil_temp": (65262, 175), "long_acc": (61449, 1810), "lat_acc": (61449, 1809),
    "driver": (65131, 1625),
}


def _dbc_signals() -> dict[str, int]:
    """Signal name → PGN of its message in the shipped truck DBC."""
    db = load_dbc(BUILTIN_DIR / "truck_j1939.dbc")
    return {s.name: pgn_of(m.frame_id) for m in db.messages for s in m.signals}


def test_every_default_name_is_in_the_dbc_in_its_parameter_group():
    dbc = _dbc_signals()
    assert {f.name for f in fields(SignalNames)} == set(J1939)
    for field in fields(SignalNames):
        name = getattr(NAMES, field.name)
        pgn, spn = J1939[field.name]
        if pgn == PGN_DI:  # text: the agent decodes it, a DBC cannot
            assert name == DI_SIGNALS[0] and spn == 1625
            continue
        assert dbc.get(name) == pgn, (field.name, name, spn)


def test_the_dbc_comments_name_the_spns():
    text = (BUILTIN_DIR / "truck_j1939.dbc").read_text()
    for field in ("odometer", "engine_hours", "battery", "ambient", "fuel_level", "fuel_rate",
                  "lat_acc", "long_acc"):
        name, spn = getattr(NAMES, field), J1939[field][1]
        assert re.search(rf'CM_ SG_ \d+ {name} "SPN {spn}"', text), name


def test_the_consumers_use_the_one_table():
    cfg = parse_maintenance(None)
    assert (cfg.odometer_signal, cfg.engine_hours_signal) == (NAMES.odometer, NAMES.engine_hours)
    assert DEFAULT_SIGNALS is NAMES
    assert {r.signal for r in ALERT_SIGNALS} <= set(NAMES.all())
    assert set(DRIVE_SIGNALS.values()) == set(NAMES.all())


def test_the_web_apps_defaults_are_the_same_names():
    js = (REPO / "web/src/maintenance.js").read_text()
    consts = dict(re.findall(r'const (FUEL_SIGNAL|DEFAULT_SIGNAL) = "([^"]+)"', js))
    assert consts == {"FUEL_SIGNAL": NAMES.fuel_level, "DEFAULT_SIGNAL": NAMES.battery}
