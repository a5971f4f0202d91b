"""Every message of every DBC: encode with cantools → frame through the pipeline → compare."""

from __future__ import annotations

import random

import pytest

from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder, is_j1939, pgn_of
from agent.can.select import Selector
from agent.can.source import CanPipeline
from tests.integration.can.can_helpers import (
    ALL_DBCS,
    BAM,
    assert_values_equal,
    bam_frames,
    frame,
    message_values,
    mux_variants,
)


def pipeline_for(*dbcs):
    dbs = [load_dbc(p) for p in dbcs]
    return CanPipeline("test", CanDecoder(dbs), Selector()), dbs


@pytest.mark.parametrize("dbc", ALL_DBCS, ids=lambda p: p.name)
def test_every_message_round_trips(dbc):
    pipe, (db,) = pipeline_for(dbc)
    rng = random.Random(dbc.name)
    checked = 0
    for message in db.messages:
        for mux in mux_variants(message):
            for _ in range(5):
                encode, expect = message_values(message, mux, rng)
                data = message.encode(encode, strict=True)
                out = []
                if message.length > 8:
                    for f in bam_frames(pgn_of(message.frame_id), data):
                        pipe.feed(f, 1000 + checked, out.append)
                else:
                    pipe.feed(frame(message.frame_id, data, message.is_extended_frame),
                              1000 + checked, out.append)
                # Selector() without rules records a value the first time and whenever seen
                assert len(out) == 1, (message.name, mux)
                assert out[0].bus == "test" and out[0].ts_ms == 1000 + checked
                assert_values_equal(out[0].values, expect)
                checked += 1
    counts = pipe.decoder.counts
    assert counts["decoded"] == checked and counts["bad_dlc"] == 0 and counts["unknown_id"] == 0
    assert checked >= 5 * len(db.messages)


@pytest.mark.parametrize("dbc", ALL_DBCS, ids=lambda p: p.name)
def test_j1939_matches_any_source_address_and_priority(dbc):
    pipe, (db,) = pipeline_for(dbc)
    rng = random.Random(7)
    j1939 = [m for m in db.messages if is_j1939(m) and m.length <= 8]
    if dbc.name in ("truck_j1939.dbc", "j1939_bam.dbc"):
        assert j1939
    for message in j1939:
        pdu1 = (message.frame_id >> 16) & 0xFF < 240
        for _ in range(20):
            prio, sa, da = rng.randrange(8), rng.randrange(256), rng.randrange(256)
            arb = (prio << 26) | (message.frame_id & 0x3FF0000) | sa
            arb |= (da << 8) if pdu1 else (message.frame_id & 0xFF00)
            encode, expect = message_values(message, mux_variants(message)[-1], rng)
            out = []
            pipe.feed(frame(arb, message.encode(encode), True), 5, out.append)
            assert len(out) == 1 and pipe.decoder.feed(
                frame(arb, message.encode(encode), True), 5).message == message.name
            assert_values_equal(out[0].values, expect)


def test_non_j1939_extended_id_needs_exact_match():
    pipe, (db,) = pipeline_for(ALL_DBCS[2])
    message = db.get_message_by_name("ExtNonJ1939")
    data = message.encode({"X1": 5, "X2": -1.5})
    assert pipe.decoder.feed(frame(message.frame_id, data, True), 0).values == {"X1": 5, "X2": -1.5}
    assert pipe.decoder.feed(frame(message.frame_id ^ 0x01, data, True), 0) is None
    assert pipe.decoder.counts["unknown_id"] == 1


def test_bam_from_two_senders_interleaved():
    db = load_dbc(BAM)
    dec = CanDecoder([db])
    message = db.get_message_by_name("BigPGN")
    rng = random.Random(3)
    payloads = []
    for _ in range(2):
        encode, expect = message_values(message, None, rng)
        payloads.append((message.encode(encode), expect))
    a = bam_frames(pgn_of(message.frame_id), payloads[0][0], sa=0x10)
    b = bam_frames(pgn_of(message.frame_id), payloads[1][0], sa=0x20)
    results = {}
    for fa, fb in zip(a, b, strict=True):
        for f in (fa, fb):
            d = dec.feed(f, 10)
            if d is not None:
                results[d.frame_id & 0xFF] = d.values
    assert set(results) == {0x10, 0x20}
    assert_values_equal(results[0x10], payloads[0][1])
    assert_values_equal(results[0x20], payloads[1][1])
    assert dec.counts["tp_complete"] == 2 and dec.counts["tp_errors"] == 0
