"""Random frames, lengths and flags never raise out of the decoder or pipeline."""

from __future__ import annotations

import can
from can_helpers import ALL_DBCS, BAM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.can.dbcload import load_dbc
from agent.can.decoder import COUNTERS, CanDecoder
from agent.can.logs import parse_candump_line
from agent.can.select import Rule, Selector
from agent.can.source import CanPipeline

DBS = [load_dbc(p) for p in ALL_DBCS]
KNOWN_IDS = [m.frame_id for db in DBS for m in db.messages] + [0x18ECFF00, 0x1CEBFF21, 0x7E8]

ids = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.integers(0, 0x7FF),
    st.integers(0, 0x1FFFFFFF),
    st.sampled_from(KNOWN_IDS).map(lambda i: (i & 0x3FFFF00) | 0x21),  # other SA
)
frames = st.builds(
    lambda arb, data, ext, err, rtr, fd: can.Message(
        arbitration_id=arb, data=data, is_extended_id=ext or arb > 0x7FF, is_error_frame=err,
        is_remote_frame=rtr, is_fd=fd, dlc=len(data), check=False),
    ids, st.binary(max_size=64), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(frames, st.integers(0, 10**13)), max_size=40))
def test_random_frames_never_raise(batch):
    for selection in (None, {"EEC1": {"EngSpeed": "rpm"}, "BigPGN": {"P_A": "P_A"}}):
        pipe = CanPipeline("f", CanDecoder(DBS, selection),
                           Selector({"rpm": Rule(deadband=1)}, snapshot_hz=5))
        out = []
        for msg, ts in batch:
            pipe.feed(msg, ts, out.append)
        counts = pipe.decoder.counts
        assert counts["frames"] == len(batch)
        assert set(counts) == set(COUNTERS)
        for reading in out:
            for value in reading.values.values():
                assert isinstance(value, (int, float, str)) and value == value  # no NaN


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=20))
def test_random_transport_sessions_never_raise(datas):
    dec = CanDecoder([load_dbc(BAM)])
    for i, data in enumerate(datas):
        arb = (0x1CECFF00 if i % 3 == 0 else 0x1CEBFF00) | (i % 2)
        dec.feed(can.Message(arbitration_id=arb, data=data, is_extended_id=True), i)
    assert dec.counts["tp_packets"] == len(datas)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=80),
    st.builds(lambda t, f: f"({t}) can0 {f}", st.floats(allow_nan=True),
              st.text(alphabet="0123456789ABCDEFabcdef#Rr.", max_size=40)),
))
def test_candump_parser_raises_only_value_error(line):
    try:
        parse_candump_line(line)
    except ValueError:
        pass


line_parts = st.tuples(
    st.sampled_from(["(1767225600.000000)", "(1.5)", "(x)", "1.0", "(nan)"]),
    st.sampled_from(["can0", "vcan0", ""]),
    st.one_of(
        st.sampled_from(["0CF00400", "18FEF121", "18ECFF21", "18EBFF21", "7E8", "123", "20000040",
                         "zz", "1FFFFFFFF"]),
        st.integers(0, 0x1FFFFFFF).map(lambda i: f"{i:08X}")),
    st.sampled_from(["#", "##1", "#R", "##"]),
    st.binary(max_size=66).map(lambda b: b.hex().upper()),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(line_parts, max_size=30))
def test_replay_source_survives_random_logs(tmp_path_factory, parts):
    import asyncio

    from agent.can.source import ReplaySource

    path = tmp_path_factory.mktemp("fuzz") / "random.log"
    path.write_text("\n".join(f"{t} {i} {a}{sep}{d}" for t, i, a, sep, d in parts) + "\n")
    src = ReplaySource("can:f", CanPipeline("f", CanDecoder(DBS), Selector(snapshot_hz=10)),
                       path, speed=0)
    out = []

    async def play():
        task = asyncio.create_task(src.run(out.append))
        async with asyncio.timeout(5):
            while src.state not in ("finished", "down"):
                await asyncio.sleep(0.001)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(play())
    st_ = src.status()
    assert st_["frames"] + st_["bad_lines"] == len(parts)
    assert all(isinstance(r.ts_ms, int) for r in out)
