"""The wire fuzzer (issue 22, "Done when"): hostile geostream messages from an authenticated
vehicle into the real gateway (aioquic on loopback, real writer and SQLite store).

Each example opens a session of the hostile vehicle with a fresh epoch and sends one message
built by hypothesis: CBOR tags (value sharing among them), nesting 10,000 deep, 2^64 integers,
NaN and infinities, megabyte strings, a wrong type in any field, timestamps far from now. The
oracle, after every example:
- the hostile session ends either with a fatal error that the gateway counted under its code,
  or with an ack (after a non-fatal `invalid-reading` if some readings were refused);
- what was acknowledged is in the store exactly once (readings plus dead letters of that epoch
  equal the acknowledged sequence numbers), and nothing of a refused message is;
- a well-behaved vehicle sends one more position and is acknowledged (the gateway is up and the
  shared writer still commits); at the end its rows are exactly 1..n.
Bounded: `FUZZ_EXAMPLES` examples, no shrinking database, one event loop driven by the test.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import struct

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geostream.deflate import Deflater
from geostream.errors import ErrorCode
from geostream.limits import MAX_CBOR_DEPTH
from geostream.messages import Ack, Batch, Error, Welcome
from tests.integration.net.rig import GatewayRig, RawClient

# Enough to hit every family several times; ~0.2 s each on loopback.
FUZZ_EXAMPLES = 60
TS = 1_750_000_000_000
PLACEHOLDER = "\u2603PLACEHOLDER\u2603"
SELF_REFERENCING_MAP = bytes.fromhex("d81ca16161d81d00")

# --- hostile pieces ----------------------------------------------------------------------------


def tag_item(tag: int) -> bytes:
    """Tag `tag` around the integer 0 (any tag number, 0 … 2^64−1)."""
    if tag < 24:
        return bytes([0xC0 | tag, 0])
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if tag < 1 << (8 * width):
            return bytes([0xC0 | ai]) + tag.to_bytes(width, "big") + b"\x00"
    raise ValueError(tag)


def nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


def shared_bomb(levels: int) -> bytes:
    """32**levels leaves through value sharing, in ~100 bytes a level."""
    def level(depth: int, index: int) -> bytes:
        head = bytes.fromhex("d81c") + bytes([0x98, 32])
        if depth == 1:
            return head + b"\x00" * 32
        ref = bytes.fromhex("d81d") + cbor2.dumps(index + 1)
        return head + level(depth - 1, index + 1) + ref * 31
    return level(levels, 0)


raw_items = st.one_of(
    st.integers(0, 2**64 - 1).map(tag_item),
    st.sampled_from([28, 29, 25, 256, 2, 3, 0, 1, 55799]).map(tag_item),
    st.just(SELF_REFERENCING_MAP),
    st.integers(2, 6).map(shared_bomb),
    st.sampled_from([MAX_CBOR_DEPTH + 1, 100, 10_000]).map(nested),
    st.just(b"\x9f\x00\xff"),                     # indefinite array
    st.just(b"\xa2\x61a\x00\x61a\x01"),           # duplicate keys
)

wrong_values = st.one_of(
    st.sampled_from([None, True, False, "", "x", b"\x00", [], {}, [1, 2], {"a": 1},
                     math.nan, math.inf, -math.inf, -1, 0, 2**63, 2**64 - 1, -(2**64), 1.5,
                     {"nested": {"deeper": [math.nan]}}]),
    st.integers(-(2**64), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)

far_times = st.one_of(st.integers(0, 946_684_799_999),
                      st.integers(4_000_000_000_000, 2**63 - 1),
                      st.just(253_402_300_800_000))

READING_FIELDS = {
    "pos": ("q", "ts", "k", "lat", "lon", "alt", "spd", "crs", "fix", "mode", "sat", "hdop",
            "clk"),
    "can": ("q", "ts", "k", "bus", "sig"),
    "evt": ("q", "ts", "k", "name", "data"),
}


def good_reading(kind: str, q: int) -> dict:
    if kind == "pos":
        return {"q": q, "ts": TS + q, "k": "pos", "lat": 52.0, "lon": 4.0, "alt": 3.0,
                "spd": 50.0, "crs": 90.0, "fix": 1, "mode": 3, "sat": 9, "hdop": 0.9,
                "clk": -3}
    if kind == "can":
        return {"q": q, "ts": TS + q, "k": "can", "bus": "j1939",
                "sig": {"EngineSpeed": 812.5, "Gear": "D"}}
    return {"q": q, "ts": TS + q, "k": "evt", "name": "dtc",
            "data": {"src": 0, "dtcs": [{"spn": 100, "fmi": 1}]}}


@st.composite
def hostile_batches(draw) -> tuple[str, object]:
    """(family, message): a batch map with one hostile spot, or raw bytes to frame."""
    n = draw(st.integers(1, 4))
    readings = [good_reading(draw(st.sampled_from(sorted(READING_FIELDS))), q)
                for q in range(1, n + 1)]
    victim = draw(st.integers(0, n - 1))
    r = readings[victim]
    family = draw(st.sampled_from(["raw", "wrong-type", "far-time", "big-text", "nan",
                                   "huge-int", "envelope", "compressed-raw"]))
    batch: dict = {"t": "batch", "epoch": None, "readings": readings}
    if family in ("raw", "compressed-raw"):
        field = draw(st.sampled_from([f for f in READING_FIELDS[r["k"]] if f != "k"]))
        r[field] = PLACEHOLDER
        return family, (batch, draw(raw_items))
    if family == "wrong-type":
        r[draw(st.sampled_from(READING_FIELDS[r["k"]]))] = draw(wrong_values)
    elif family == "far-time":
        r["ts"] = draw(far_times)
    elif family == "big-text":
        size = draw(st.sampled_from([2_000, 60_000, 300_000, 1_048_576]))
        field = draw(st.sampled_from(["bus", "name", "sig", "data", "lat"]))
        r[field] = {"s": "x" * size} if field in ("sig", "data") else "x" * size
    elif family == "nan":
        value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        if r["k"] == "pos":
            r[draw(st.sampled_from(["lat", "lon", "alt", "spd", "crs", "hdop"]))] = value
        elif r["k"] == "can":
            r["sig"]["EngineSpeed"] = value
        else:
            r["data"]["src"] = value
    elif family == "huge-int":
        field = draw(st.sampled_from(["q", "ts", "fix", "sat", "clk", "lat", "sig", "data"]))
        value = draw(st.sampled_from([2**63, 2**64 - 1, -(2**64)]))
        r[field] = {"v": value} if field in ("sig", "data") else value
    else:  # the batch's own fields
        batch[draw(st.sampled_from(["t", "epoch", "readings", "vehicle", "z"]))] = draw(
            wrong_values)
    return family, batch


# --- the rig, driven from the test's own event loop -------------------------------------------


class Fuzz:
    def __init__(self, rig: GatewayRig):
        self.rig = rig
        self.epoch = 100
        self.good_q = 0
        self.refused = 0     # sessions ended by a fatal error, or messages skipped as unknown
        self.accepted = 0    # hostile sessions acknowledged
        self.good: RawClient | None = None

    async def start(self) -> None:
        self.hostile_token = await self.rig.provision("hostile")
        good_token = await self.rig.provision("good")
        self.good = await RawClient(self.rig).connect()
        assert isinstance(await self.good.hello("good", good_token, epoch=1), Welcome)

    def encode(self, family: str, message) -> bytes:
        if isinstance(message, tuple):  # a batch map with raw CBOR at the placeholder
            batch, raw = message
            batch = {**batch, "epoch": self.epoch}
            if family == "compressed-raw":
                readings = cbor2.dumps(batch.pop("readings")).replace(
                    cbor2.dumps(PLACEHOLDER), raw)
                batch["z"] = Deflater().piece(readings)
                payload = cbor2.dumps(batch)
            else:
                payload = cbor2.dumps(batch).replace(cbor2.dumps(PLACEHOLDER), raw)
        else:
            batch = dict(message)
            if batch.get("epoch", 0) is None:
                batch["epoch"] = self.epoch
            payload = cbor2.dumps(batch)
        return struct.pack(">I", len(payload)) + payload

    async def attack(self, family: str, message) -> None:
        self.epoch += 1
        before = dict(self.rig.gateway.stats.refusals)
        invalid_before = self.rig.gateway.stats.invalid_readings
        client = await RawClient(self.rig).connect()
        try:
            assert isinstance(await client.hello("hostile", self.hostile_token, self.epoch),
                              Welcome)
            data = self.encode(family, message)
            client.send_raw(data)
            end = await client.next_message((Ack, Error), timeout=20)
            while isinstance(end, Error) and end.code == ErrorCode.INVALID_READING:
                assert not end.fatal  # some readings refused; the ack follows
                end = await client.next_message((Ack, Error), timeout=20)
        finally:
            client.close()
        refusals = self.rig.gateway.stats.refusals
        stored = await self.stored(self.epoch)
        if family in ("raw", "compressed-raw"):  # outside geostream's CBOR: never decoded
            assert isinstance(end, Error) and end.code == ErrorCode.MALFORMED, (family, end)
        if isinstance(end, Error):  # fatal, or unknown-type (skipped, nothing more comes)
            assert end.fatal or end.code == ErrorCode.UNKNOWN_TYPE, end
            label = ErrorCode(end.code).label
            assert refusals[label] == before.get(label, 0) + 1, (label, end)
            assert sum(refusals.values()) == sum(before.values()) + 1
            assert stored == [], f"{family}: refused, yet stored {stored}"
            self.refused += 1
        else:
            assert sum(refusals.values()) == sum(before.values())
            acked = set(range(1, end.through + 1)) | {
                q for a, b in end.ranges for q in range(a, b + 1)}
            assert sorted(stored) == sorted(acked), (family, stored, acked)  # once each
            dead = await self.dead_letters(self.epoch)
            assert self.rig.gateway.stats.invalid_readings - invalid_before == len(dead)
            self.accepted += 1
        await self.well_behaved_vehicle_is_acknowledged()

    async def well_behaved_vehicle_is_acknowledged(self) -> None:
        self.good_q += 1
        self.good.send(Batch(epoch=1, readings=({"q": self.good_q, "ts": TS + self.good_q,
                                                 "k": "pos", "lat": 52.0, "lon": 4.0},)))
        ack = await self.good.next_message(Ack, timeout=20)
        assert ack.through == self.good_q

    async def stored(self, epoch: int) -> list[int]:
        """The hostile vehicle's sequence numbers of `epoch` in the store: readings and dead
        letters together (a duplicate would show twice)."""
        def q() -> list[int]:
            with sqlite3.connect(self.rig.db_path, timeout=10) as db:
                rows = db.execute("SELECT seq FROM vehicle_telemetry WHERE vehicle_id = "
                                  "'hostile' AND epoch = ?", (epoch,)).fetchall()
                rows += db.execute("SELECT seq FROM dead_letter WHERE vehicle_id = 'hostile' "
                                   "AND epoch = ?", (epoch,)).fetchall()
            return [r[0] for r in rows]
        return await asyncio.get_running_loop().run_in_executor(None, q)

    async def dead_letters(self, epoch: int) -> list[dict]:
        return [d for d in await self.rig.store.dead_letters()
                if d["vehicle_id"] == "hostile" and d["epoch"] == epoch]


def test_hostile_messages_never_stop_the_gateway(tmp_path, pki):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    rig = GatewayRig(tmp_path, pki)
    fuzz = Fuzz(rig)
    try:
        loop.run_until_complete(rig.start())
        loop.run_until_complete(fuzz.start())

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(hostile_batches())
        def one(example):
            family, message = example
            loop.run_until_complete(asyncio.wait_for(fuzz.attack(family, message), 60))

        one()
        assert fuzz.refused > 0 and fuzz.accepted > 0  # both outcomes were exercised
        assert loop.run_until_complete(rig.seqs("good")) == list(range(1, fuzz.good_q + 1))
        assert fuzz.rig.gateway.stats.refusals.total() == fuzz.refused
        assert fuzz.rig.writer.stats.restarts == 0
    finally:
        if fuzz.good is not None:
            fuzz.good.close()
        loop.run_until_complete(rig.stop())
        loop.close()
        asyncio.set_event_loop(None)
