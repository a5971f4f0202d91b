"""J1939 DM1: single frame and BAM, decoded into DTCs and lamps, journalled only on change."""

from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder
from agent.can.dtc import parse_obd_dtcs
from agent.can.select import Selector
from agent.can.source import CanPipeline
from agent.readings import Event
from tests.integration.can.can_helpers import TRUCK, bam_frames, frame

DM1_ID = (6 << 26) | (0xFECA << 8)


def dtc_bytes(spn: int, fmi: int, oc: int) -> bytes:
    """SAE J1939-73 DTC layout, written out by hand: SPN low 16 bits, SPN high 3 bits above
    the 5-bit FMI, then CM (0) and the 7-bit occurrence count."""
    return bytes([spn & 0xFF, (spn >> 8) & 0xFF, ((spn >> 16) << 5) | fmi, oc & 0x7F])


def dm1_payload(dtcs, mil=0, awl=0) -> bytes:
    lamps = (mil << 6) | (awl << 2)
    body = b"".join(dtc_bytes(*d) for d in dtcs) or bytes(4)
    return bytes([lamps, 0xFF]) + body


def pipeline():
    return CanPipeline("truck", CanDecoder([load_dbc(TRUCK)], dm1=True), Selector())


def feed_dm1(pipe, dtcs, ts, sa=0x00, **lamps):
    out = []
    payload = dm1_payload(dtcs, **lamps)
    frames = ([frame(DM1_ID | sa, payload.ljust(8, b"\xff"), True)] if len(payload) <= 8
              else bam_frames(0xFECA, payload, sa=sa, priority=6))
    for f in frames:
        pipe.feed(f, ts, out.append)
    return [r for r in out if isinstance(r, Event)]


def test_single_frame_dm1_with_lamps():
    pipe = pipeline()
    (evt,) = feed_dm1(pipe, [(110, 0, 3)], 1000, sa=0x00, mil=1)
    assert evt.name == "dtc" and evt.ts_ms == 1000
    assert evt.data == {"bus": "truck", "proto": "j1939", "src": 0, "set": "active",
                        "dtcs": [{"spn": 110, "fmi": 0, "oc": 3}],
                        "lamps": {"mil": 1, "rsl": 0, "awl": 0, "pl": 0}}


def test_bam_dm1_with_three_dtcs_and_a_19_bit_spn():
    pipe = pipeline()
    dtcs = [(523000, 31, 1), (100, 1, 2), (110, 16, 126)]
    (evt,) = feed_dm1(pipe, dtcs, 0, sa=0x03, awl=1)
    assert evt.data["src"] == 3 and evt.data["lamps"]["awl"] == 1
    assert evt.data["dtcs"] == [{"spn": 100, "fmi": 1, "oc": 2}, {"spn": 110, "fmi": 16, "oc": 126},
                                {"spn": 523000, "fmi": 31, "oc": 1}]
    assert pipe.decoder.counts["tp_complete"] == 1


def test_only_changes_of_the_active_set_are_journalled():
    pipe = pipeline()
    assert feed_dm1(pipe, [], 0) == []  # first report, nothing active: no news
    assert len(feed_dm1(pipe, [(110, 0, 1)], 1000)) == 1
    assert feed_dm1(pipe, [(110, 0, 1)], 2000) == []  # the 1 Hz repeat
    assert feed_dm1(pipe, [(110, 0, 2)], 3000) == []  # occurrence count rose: same set
    assert len(feed_dm1(pipe, [(110, 0, 2), (100, 1, 1)], 4000)) == 1
    (cleared,) = feed_dm1(pipe, [], 5000)
    assert cleared.data["dtcs"] == []
    # another controller has its own set
    assert len(feed_dm1(pipe, [(110, 0, 1)], 6000, sa=0x0B)) == 1
    assert pipe.status()["dtc_events"] == 4 and pipe.status()["dm1"] == 7


def test_dm1_off_by_default_for_an_explicit_decoder():
    dec = CanDecoder([load_dbc(TRUCK)])
    assert dec.feed(frame(DM1_ID, dm1_payload([(110, 0, 1)]).ljust(8, b"\xff"), True), 0) is None
    assert dec.counts["dm1"] == 0


def test_obd_dtc_codes():
    # SAE J2012: two bytes per code, the top two bits the letter
    assert parse_obd_dtcs(bytes([0x03, 0x01, 0x41, 0x23, 0xC1, 0x00, 0, 0])) == (
        {"code": "P0301"}, {"code": "C0123"}, {"code": "U0100"})


def test_an_obd_query_collects_single_frame_answers_for_its_pid_only():
    import can

    pipe = pipeline()
    sink: list = []
    pipe.queries[(1, 0x0D)] = answers = []
    for arb, data in ((0x7E8, "03410d3caaaaaaaa"), (0x7E9, "03410d3daaaaaaaa"),
                      (0x7E8, "03410c3caaaaaaaa"),  # another PID
                      (0x7E8, "1014490201aaaaaa"),  # a first frame: not a single frame
                      (0x7E0, "03410d3caaaaaaaa")):  # not an answer id
        pipe.feed(can.Message(arbitration_id=arb, data=bytes.fromhex(data),
                              is_extended_id=False), 1000, sink.append)
    assert answers == [(0x7E8, b"\x3c"), (0x7E9, b"\x3d")]
    # (no poller configured: the answers feed nothing else)
    assert sink == []
