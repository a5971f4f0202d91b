"""J1939 Driver's Identification (PGN 65131): the tachograph's card numbers, ASCII fields ending
in '*', become the string signals Driver1Identification / Driver2Identification — as a single
frame, reassembled from a BAM, selected by name like a DBC signal; hostile bytes never become
an id."""

from __future__ import annotations

from pathlib import Path

from agent.can.config import make_sources
from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder
from agent.can.j1939text import MAX_ID_CHARS, parse_di
from agent.can.logs import parse_candump_line
from hil import can_gen
from tests.integration.can.can_helpers import TRUCK, bam_frames, frame

DI_ID = (6 << 26) | (0xFE6B << 8) | 0xEE  # priority 6, PGN 65131, the tachograph's address
CARD = "FIN0000000000042"


def test_parse_the_two_fields_and_ignore_padding_and_a_torn_tail():
    assert parse_di(b"AB12*CD34*") == {"Driver1Identification": "AB12",
                                       "Driver2Identification": "CD34"}
    assert parse_di(b"AB12**\xff\xff\xff") == {"Driver1Identification": "AB12"}
    assert parse_di(b" AB12 *") == {"Driver1Identification": "AB12"}
    assert parse_di(b"AB12") == {}  # no delimiter: not a field (a torn message)
    assert parse_di(b"*CD34*") == {"Driver2Identification": "CD34"}


def test_hostile_bytes_are_not_ids():
    assert parse_di(b"AB\x0012*") == {}  # a control character
    assert parse_di("ÄB12*".encode("latin-1")) == {}  # not ASCII
    assert parse_di(b"A" * (MAX_ID_CHARS + 1) + b"*") == {}
    assert parse_di(b"A" * MAX_ID_CHARS + b"*") == {"Driver1Identification": "A" * MAX_ID_CHARS}
    assert parse_di(b"") == {} and parse_di(b"*" * 300) == {}


def _decoder(selection=None, di=True):
    return CanDecoder([load_dbc(TRUCK)], selection, di=di)


def test_single_frame_and_bam_decode_to_the_driver_signal():
    d = _decoder()
    got = d.feed(frame(DI_ID, b"D1*D2*\xff\xff", True), 0)
    assert (got.message, got.values) == ("DI", {"Driver1Identification": "D1",
                                                "Driver2Identification": "D2"})
    payload = f"{CARD}*SECOND-CARD-0001*".encode()
    out = [d.feed(f, i * 50) for i, f in enumerate(bam_frames(0xFE6B, payload, sa=0xEE))]
    assert out[:-1] == [None] * (len(out) - 1)
    assert out[-1].values == {"Driver1Identification": CARD,
                              "Driver2Identification": "SECOND-CARD-0001"}
    assert d.counts["tp_complete"] == 1 and d.counts["tp_errors"] == 0


def test_off_and_unselected_di_are_not_decoded():
    assert _decoder(di=False).feed(frame(DI_ID, b"D1*D2*\xff\xff", True), 0) is None
    only_rpm = _decoder({"EEC1": {"EngSpeed": "EngSpeed"}})
    assert only_rpm.feed(frame(DI_ID, b"D1*D2*\xff\xff", True), 0) is None
    assert only_rpm.counts["unselected"] == 1


def test_the_config_selects_it_by_name_and_the_simulator_sends_it(tmp_path):
    log = tmp_path / "drive.log"
    can_gen.write_candump(log, 25, driver=CARD)
    source, = make_sources({"bus": [{"name": "truck", "interface": "replay", "replay": str(log),
                                     "dbc": ["truck_j1939.dbc"],
                                     "signals": ["Driver1Identification",
                                                 "BatteryPotential_PowerInput1"]}]},
                           "agent.toml", Path(tmp_path))
    out = []
    for line in log.read_text().splitlines():
        msg = parse_candump_line(line)
        source.pipeline.feed(msg, int(msg.timestamp * 1000), out.append)
    drivers = [(r.ts_ms, r.values["Driver1Identification"]) for r in out
               if "Driver1Identification" in r.values]
    # every DI_PERIOD_MS, once its BAM is complete (three packets BAM_GAP_MS apart)
    assert [t for t, _ in drivers] == [can_gen.DI_PHASE_MS + 3 * can_gen.BAM_GAP_MS + k * 10_000
                                       for k in range(3)]
    assert {d for _, d in drivers} == {CARD}
    volts = [r.values["BatteryPotential_PowerInput1"] for r in out
             if "BatteryPotential_PowerInput1" in r.values]
    assert len(volts) == 25 and all(13.9 <= v <= 14.3 for v in volts)
