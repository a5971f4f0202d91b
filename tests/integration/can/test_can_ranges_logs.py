"""DBC ranges kept or dropped per bus, logged once per interval; can-decode on every log
format python-can reads; refusal of unparseable DBC files."""

import json
import logging
import subprocess
import sys

import can
import pytest

from agent.can.dbcload import load_dbc
from agent.can.decoder import RANGE_LOG_INTERVAL_MS, CanDecoder
from agent.can.logs import LogFile
from tests.integration.can.can_helpers import DATA, TYPES, frame

DRIVE = DATA / "drive_20s.log"
TRUCK_DBC = "agent/dbc/truck_j1939.dbc"


def out_of_range_frame():
    """types.dbc's Phys: a value outside its [min|max] (checked against the DBC, not us)."""
    db = load_dbc(TYPES)
    for message in db.messages:
        for sig in message.signals:
            if (not message.is_multiplexed() and not sig.choices and not sig.is_float
                    and sig.maximum is not None and sig.scale > 0):
                bits = sig.length - 1 if sig.is_signed else sig.length
                raw_max = (1 << bits) - 1
                if raw_max * sig.scale + sig.offset > sig.maximum + sig.scale:
                    values = {s.name: (s.minimum or 0) if not s.choices else min(s.choices)
                              for s in message.signals}
                    data = bytearray(message.encode(values, strict=False))
                    raw = dict(message.decode(bytes(data), scaling=False, decode_choices=False))
                    raw[sig.name] = raw_max
                    data = message.encode(raw, scaling=False, strict=False)
                    return db, message, sig, bytes(data)
    raise AssertionError("types.dbc has no signal that can exceed its range")


def test_out_of_range_value_kept_counted_and_logged_once_per_interval(caplog):
    db, message, sig, data = out_of_range_frame()
    dec = CanDecoder([db])
    caplog.set_level(logging.INFO, logger="fleet_agent.can")
    for ts in (0, 1000, RANGE_LOG_INTERVAL_MS - 1, RANGE_LOG_INTERVAL_MS + 5):
        out = dec.feed(frame(message.frame_id, data, message.is_extended_frame), ts)
        assert out.values[sig.name] > sig.maximum
    assert dec.counts["out_of_dbc_range"] >= 4
    lines = [r for r in caplog.records if f"{message.name}.{sig.name}" in r.getMessage()]
    assert len(lines) == 2


def test_range_check_drop_restores_dropping():
    db, message, sig, data = out_of_range_frame()
    dec = CanDecoder([db], range_check="drop")
    out = dec.feed(frame(message.frame_id, data, message.is_extended_frame), 0)
    assert sig.name not in out.values and dec.counts["out_of_dbc_range"] >= 1
    with pytest.raises(ValueError):
        CanDecoder([db], range_check="clip")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "agent", "can-decode", *args],
                          capture_output=True, text=True, timeout=120)


def rows(stdout: str):
    return [(r["frame_id"], r["message"], r["signals"])
            for r in map(json.loads, stdout.splitlines())]


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".trc"])
def test_can_decode_reads_asc_blf_trc_like_candump(tmp_path, suffix):
    frames = list(LogFile(DRIVE))
    path = tmp_path / f"drive{suffix}"
    with can.Logger(str(path)) as writer:
        for msg in frames:
            writer.on_message_received(msg)
    ref = run_cli("--dbc", TRUCK_DBC, str(DRIVE))
    got = run_cli("--dbc", TRUCK_DBC, str(path))
    assert ref.returncode == 0 and got.returncode == 0, got.stderr
    assert rows(got.stdout) == rows(ref.stdout) and len(rows(ref.stdout)) > 1000


def test_can_decode_refuses_an_unparseable_dbc_without_traceback():
    bad = DATA.parent / "dbc" / "opendbc_mazda_2017.dbc"
    r = run_cli("--dbc", str(bad), str(DRIVE))
    assert r.returncode == 2 and "opendbc_mazda_2017.dbc line 273" in r.stderr
    assert "Traceback" not in r.stderr


def test_can_decode_warns_for_a_non_strict_dbc_and_decodes():
    nonstrict = DATA.parent / "dbc" / "cantools_issue_63.dbc"
    r = run_cli("--dbc", str(nonstrict), "--dbc", TRUCK_DBC, str(DRIVE))
    assert r.returncode == 0 and r.stdout
    warnings = [line for line in r.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "cantools_issue_63.dbc line" in warnings[0]
    assert "1 DBC warnings" in r.stderr
