"""Decoder robustness: lengths, unknown ids, J1939 error codes, error/remote frames, BAM faults,
selection, kernel filters, and frames held inside a min_interval."""

from __future__ import annotations

import random

import can

from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder, pgn_of
from agent.can.pipeline import CanPipeline
from agent.can.select import Rule, Selector
from tests.integration.can.can_helpers import BAM, OBD2, TRUCK, TYPES, bam_frames, frame

EEC1 = 0x0CF00400


def truck(selection=None):
    return CanDecoder([load_dbc(TRUCK)], selection)


def test_short_frame_counted_not_decoded():
    dec = truck()
    msg = load_dbc(TRUCK).get_message_by_name("EEC1")
    data = msg.encode({"EngTorqueMode": 0, "DriverDemandEngPercentTorque": 0,
                       "ActualEngPercentTorque": 0, "EngSpeed": 1000, "EngStarterMode": 0})
    for n in range(8):
        assert dec.feed(frame(EEC1, data[:n], True), 0) is None
    assert dec.counts["bad_dlc"] == 8 and dec.counts["decoded"] == 0
    assert dec.feed(frame(EEC1, data, True), 0).values["EngSpeed"] == 1000


def test_longer_frame_is_decoded_from_its_first_bytes():
    dec = CanDecoder([load_dbc(TYPES)])
    out = dec.feed(frame(0x104, bytes([0x13, 7, 50, 0, 0, 0, 0, 0]), False), 0)
    assert out.values == {"GearPos": "D", "Mode": "normal", "Counter": 7, "Level": 50}


def test_unknown_ids_counted_standard_and_extended():
    dec = truck()
    assert dec.feed(frame(0x123, bytes(8), False), 0) is None
    assert dec.feed(frame(0x18FF0000, bytes(8), True), 0) is None  # no such PGN
    assert dec.feed(frame(0x18FF0000, bytes(8), True), 0) is None  # cached negative
    # the same number as a standard id is another frame
    assert dec.feed(frame(0x7E8, bytes(8), False), 0) is None
    assert dec.counts["unknown_id"] == 4 and dec.counts["frames"] == 4


def test_j1939_not_available_and_error_values_are_dropped():
    dec = truck()
    n_signals = len(load_dbc(TRUCK).get_message_by_name("EEC1").signals)
    # every byte 0xFF: every parameter "not available" (EngSpeed 0xFFFF, modes 0xF...)
    out = dec.feed(frame(EEC1, bytes([0xFF] * 8), True), 0)
    assert out.values == {} and dec.counts["j1939_not_available"] == n_signals
    # EngSpeed 0xFE00 is "error"; 0 in the others are values
    out = dec.feed(frame(EEC1, bytes([0, 125, 125, 0x00, 0xFE, 0, 0, 0]), True), 0)
    assert "EngSpeed" not in out.values and out.values["ActualEngPercentTorque"] == 0
    assert dec.counts["j1939_error"] == 1
    # the top of the valid range (0xFAFF) is still a value
    out = dec.feed(frame(EEC1, bytes([0, 125, 125, 0xFF, 0xFA, 0, 0, 0]), True), 0)
    assert out.values["EngSpeed"] == 8031.875
    assert dec.counts["out_of_dbc_range"] == 0


def test_error_and_remote_frames_counted():
    dec = truck()
    err = can.Message(arbitration_id=0x40, is_error_frame=True, data=bytes(8))
    assert dec.feed(err, 0) is None
    assert dec.feed(can.Message(arbitration_id=0x04, is_error_frame=True, data=bytes(8)), 0) is None
    rtr = can.Message(arbitration_id=EEC1, is_extended_id=True, is_remote_frame=True, dlc=8)
    assert dec.feed(rtr, 0) is None
    c = dec.counts
    assert (c["error_frames"], c["bus_off"], c["remote_frames"], c["decoded"]) == (2, 1, 1, 0)


def test_bad_multiplexer_value_counted():
    dec = CanDecoder([load_dbc(OBD2)])
    assert dec.feed(frame(0x7E8, bytes([3, 0x41, 0x99, 1, 0, 0, 0, 0]), False), 0) is None
    assert dec.counts["decode_errors"] == 1
    out = dec.feed(frame(0x7E8, bytes([4, 0x41, 0x0C, 0x1A, 0xF8, 0, 0, 0]), False), 0)
    assert out.values["OBD_EngineRPM"] == 0x1AF8 / 4 and out.values["PID"] == 12


def test_unselected_frames_counted_and_only_selected_signals_emitted():
    dec = truck({"CCVS1": {"WheelBasedVehicleSpeed": "speed"}})
    assert dec.feed(frame(EEC1, bytes(8), True), 0) is None
    assert dec.feed(frame(0x18FEF117, bytes([0, 0, 0x20, 0, 0, 0, 0, 0]), True), 0).values == {
        "speed": 32.0}
    assert dec.counts["unselected"] == 1 and dec.counts["unknown_id"] == 0


def test_kernel_filters_follow_the_selection():
    dec = truck({"CCVS1": {"WheelBasedVehicleSpeed": "s"}})
    assert dec.can_filters() == [{"can_id": 0xFEF100, "can_mask": 0x3FFFF00, "extended": True}]
    types = CanDecoder([load_dbc(TYPES)], {"Gear": {"Level": "Level"},
                                           "ExtNonJ1939": {"X1": "X1"}})
    assert sorted(f["can_id"] for f in types.can_filters()) == [0x104, 0x18FF1001]
    bam = CanDecoder([load_dbc(BAM)], {"BigPGN": {"P_A": "P_A"}})
    ids = {f["can_id"] for f in bam.can_filters()}
    assert {0xEC0000, 0xEB0000, 0xFF0100} <= ids  # TP.CM and TP.DT pass for multi-packet
    assert truck().can_filters() is not None


def test_pdu1_destination_is_ignored():
    dec = CanDecoder([load_dbc(BAM)])
    for da in (0x00, 0x01, 0xFF):
        out = dec.feed(frame(0x18EF0000 | (da << 8) | 0x42, bytes([9, 10, 0, 0, 0, 0, 0, 0]),
                             True), 0)
        assert out.message == "ShortPDU1" and out.values == {"Q_A": 9, "Q_B": 1.0}


def test_bam_faults_never_decode():
    db = load_dbc(BAM)
    message = db.get_message_by_name("BigPGN")
    pgn = pgn_of(message.frame_id)
    payload = bytes(range(20))
    good = bam_frames(pgn, payload)
    dec = CanDecoder([db])
    # missing packet 2
    for f in (good[0], good[1], good[3]):
        assert dec.feed(f, 0) is None
    # too slow between packets
    assert dec.feed(good[0], 0) is None and dec.feed(good[1], 0) is None
    assert dec.feed(good[2], 5000) is None
    # data frame with nothing announced, and a truncated data frame
    assert dec.feed(good[1], 6000) is None
    dec.feed(good[0], 7000)
    assert dec.feed(frame(good[1].arbitration_id, bytes(good[1].data[:5]), True), 7000) is None
    # a BAM announcing an unknown PGN, and an inconsistent packet count
    assert dec.feed(bam_frames(0xFF55, payload)[0], 8000) is None
    bad = bytearray(good[0].data)
    bad[3] = 9
    assert dec.feed(frame(good[0].arbitration_id, bytes(bad), True), 9000) is None
    c = dec.counts
    assert c["tp_complete"] == 0 and c["decoded"] == 0
    assert c["tp_errors"] == 3 and c["bad_dlc"] == 1 and c["unknown_id"] == 1
    # and after all that a clean transfer still works
    out = [dec.feed(f, 10000) for f in good]
    assert out[-1] is not None and out[-1].message == "BigPGN"


def test_bam_shorter_than_message_is_bad_length():
    db = load_dbc(BAM)
    dec = CanDecoder([db])
    frames = bam_frames(pgn_of(db.get_message_by_name("BigPGN").frame_id), bytes(15))
    assert [dec.feed(f, 0) for f in frames][-1] is None
    assert dec.counts["bad_dlc"] == 1 and dec.counts["tp_complete"] == 1


def test_first_database_wins_and_exact_id_beats_pgn():
    # a second DBC defines the same id differently: the first one listed wins
    truck_db, types_db = load_dbc(TRUCK), load_dbc(TYPES)
    dec = CanDecoder([types_db, truck_db])
    out = dec.feed(frame(0x104, bytes([0, 0, 0]), False), 0)
    assert out.message == "Gear"
    assert dec.feed(frame(0x18FEF100, bytes(8), True), 0).message == "CCVS1"


def test_rts_cts_session_is_followed_passively_and_abort_ends_it():
    db = load_dbc(BAM)
    message = db.get_message_by_name("BigPGN")
    pgn = pgn_of(message.frame_id)
    payload = message.encode({"P_A": 100, "P_B": 7, "P_C": -3, "P_D": 2**40, "P_E": 0,
                              "P_F": 9})
    sa, da = 0x21, 0x00

    def cm(control, src, dst, extra=b"\x10\x00\x03\x03"):
        body = bytes([control]) + extra + bytes([pgn & 0xFF, pgn >> 8 & 0xFF, pgn >> 16])
        return frame(0x1CEC0000 | dst << 8 | src, body, True)

    def dt(seq, src=sa, dst=da):
        chunk = payload[(seq - 1) * 7: seq * 7].ljust(7, b"\xff")
        return frame(0x1CEB0000 | dst << 8 | src, bytes([seq]) + chunk, True)

    rts = cm(16, sa, da, bytes([20, 0, 3, 3]))
    cts = cm(17, da, sa, bytes([3, 1, 0xFF, 0xFF]))
    dec = CanDecoder([db])
    results = [dec.feed(f, 0) for f in (rts, cts, dt(1), dt(2), dt(3))]
    assert results[-1].message == "BigPGN" and results[-1].values["P_D"] == 2**40
    assert results[-1].frame_id & 0xFF == sa
    # the receiver aborts half way: the rest is not decoded
    abort = cm(255, da, sa, bytes([1, 0xFF, 0xFF, 0xFF]))
    results = [dec.feed(f, 0) for f in (rts, cts, dt(1), abort, dt(2), dt(3))]
    assert results == [None] * 6
    # a BAM must go to the global address
    bad_bam = cm(32, sa, 0x05, bytes([20, 0, 3, 0xFF]))
    assert dec.feed(bad_bam, 0) is None
    assert dec.counts["tp_complete"] == 1 and dec.counts["tp_errors"] == 1


def eec1_data(raw_speed: int) -> bytes:
    return bytes([0, 0, 0, raw_speed & 0xFF, raw_speed >> 8, 0, 0, 0])


def test_min_interval_holds_frames_without_changing_what_is_recorded():
    """Frames inside every selected signal's min_interval are skipped before decoding
    (`held`); what is recorded equals a brute-force reference over cantools' decode."""
    db = load_dbc(TRUCK)
    rng = random.Random(8)
    frames = []
    for t in range(0, 20_000, 5):  # EEC1 every 5 ms, CCVS1 every 50 ms, mixed SAs
        frames.append((t, can.Message(arbitration_id=EEC1 | rng.choice((0, 1)),
                                      is_extended_id=True,
                                      data=eec1_data(rng.randrange(0xFA00)))))
        if t % 50 == 0:
            frames.append((t, can.Message(arbitration_id=0x18FEF100, is_extended_id=True,
                                          data=bytes([0, rng.randrange(250), 0, 0, 0, 0, 0,
                                                      0]))))
    rules = {"rpm": Rule(min_interval_ms=100), "speed": Rule(min_interval_ms=20)}
    selection = {"EEC1": {"EngSpeed": "rpm"}, "CCVS1": {"WheelBasedVehicleSpeed": "speed"}}
    pipe = CanPipeline("truck", CanDecoder([db], selection), Selector(rules))
    out = []
    for ts, msg in frames:
        pipe.feed(msg, ts, out.append)
    expected, last = [], {}
    names = {"EngSpeed": "rpm", "WheelBasedVehicleSpeed": "speed"}
    for ts, msg in frames:
        decoded = db.get_message_by_frame_id(msg.arbitration_id & ~0xFF).decode(msg.data)
        values = {}
        for name, key in names.items():
            if name in decoded and ts - last.get(key, -10**9) >= rules[key].min_interval_ms:
                last[key] = ts
                values[key] = decoded[name]
        if values:
            expected.append((ts, values))
    assert [(r.ts_ms, r.values) for r in out] == expected
    assert pipe.decoder.counts["held"] > len(frames) / 2


def test_a_multiplexed_message_is_never_held():
    """TIRE1 carries one tyre per frame: a frame of one tyre says nothing about the next."""
    db = load_dbc(TRUCK)
    tire1 = db.get_message_by_name("TIRE1")
    pipe = CanPipeline("truck", CanDecoder([db]), Selector(None, Rule(min_interval_ms=1000)))
    out = []
    for i, location in enumerate((0x00, 0x01, 0x10, 0x11)):
        values = {s.name: 0 for s in tire1.signals if s.multiplexer_ids is None
                  or location in s.multiplexer_ids}
        values["TireLocation"] = location
        pipe.feed(can.Message(arbitration_id=tire1.frame_id, is_extended_id=True,
                              data=tire1.encode(values, strict=False)), i, out.append)
    assert pipe.decoder.counts["held"] == 0 and pipe.decoder.counts["decoded"] == 4
    keys = set().union(*(r.values for r in out))
    assert {"TirePress_Steer_L", "TirePress_Steer_R", "TirePress_Drive_LO",
            "TirePress_Drive_LI"} <= keys
