"""The gateway's application path per 1 Hz reading, without sockets or event loop (issue 29).

    .venv/bin/python bench/bench_app_path.py [--vehicles 1000] [--seconds 5] [--rounds 5]
        [--profile]

`--vehicles` sessions (each after its hello and welcome, the preset dictionary agreed as the
agent's are) receive `--seconds` one-reading batches each, made by the load tester's vehicles
(positions with every quantity, every 4th reading a CAN snapshot of 8 signals) and framed by
the agent's `ClientSession`. Per second of the fleet, the gateway's work from the stream bytes
to the ack and the live feed, with the same functions the gateway runs:
- in: each vehicle's frame through `ServerSession.receive` (framing, DEFLATE against the
  dictionary, strict CBOR, the session's checks) and `backend.gateway_rows.validate_batch`
  (every field of every reading, the stored rows);
- ack: `ServerSession.committed` and `data_to_send` (the ack's bytes) per vehicle;
- hub: the tick's newest positions to a `Hub` (`backend.gateway_ingest.publish_positions`).
- whole: the same frames through the gateway's own objects, from the stream data's arrival
  to the ack written to the stream: `GatewayProtocol.quic_event_received` (its session,
  `validate_batch`, `Ingest.batch` and the writer's `add`), each batch's `settle` as the
  writer calls it after a commit, the tick's end (`Ingest`'s acks: `acknowledge`,
  `flush_acks`, the connection's `send_stream_data` and `transmit`; the hub; the alert
  consumer with no rules). The QUIC connection, the edge and the writer's store are stand-ins
  that only record what they are given; the connections were opened by a hello through the
  same path.
The baseline in the same run: the libraries' floor for the same frames, `zlib` inflating
each frame's readings against the dictionary and `cbor2.loads` (no checks) of the frame and
of the readings. The process's garbage collector runs as the gateway's does
(`backend.gc_policy.after_start` once the fleet is built: without it, the youngest
generation's collections every 700 allocations made 0.3-0.4 of the path's ratio to the floor,
which the gateway does not pay). Rounds are interleaved (floor, ours, floor, …) and the best
of each is printed, in µs of the thread's CPU time per reading, so a busy machine slows both
alike; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402

from backend import gc_policy  # noqa: E402
from backend.hub import Hub  # noqa: E402

try:
    from backend.gateway_ingest import publish_positions
    from backend.gateway_rows import validate_batch
except ImportError:  # a tree before them (A/B against the session's start): the same work
    from backend.hub import position_feature
    from backend.store.base import newest_positions

    def publish_positions(hub, rows):
        for newest in newest_positions(rows).values():
            hub.position(newest.vehicle_id, newest.time_ms, position_feature(
                newest.vehicle_id, newest.time_ms, newest.lat, newest.lon, newest.speed_kmh,
                newest.course_deg, newest.seq))

    from backend.gateway_conn import GatewayProtocol

    _gw = SimpleNamespace(ts_window=None, driver_actions=None, stats=None)
    _me = SimpleNamespace(gateway=_gw, vehicle_id=None, session=None)

    def validate_batch(batch, vehicle, now_ms, window, images, invalid):
        _gw.ts_window, _gw.stats, _me.vehicle_id = window, SimpleNamespace(invalid=invalid), vehicle
        return GatewayProtocol._validate(_me, batch, now_ms)
from backend.gateway import Gateway  # noqa: E402
from backend.gateway_conn import GatewayProtocol  # noqa: E402
from backend.gateway_ingest import ACKS_PER_CALLBACK  # noqa: E402
from backend.store.base import AuthResult  # noqa: E402
from geostream.deflate import WINDOW_BITS  # noqa: E402
from geostream.schema import DEFAULT_WINDOW  # noqa: E402
from geostream.session import BatchReceived, ClientSession, ServerSession  # noqa: E402
from geostream.zdict import DICTIONARIES  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

NOW_MS = 1_765_000_000_000
CREDIT = 64


def _frames(client: ClientSession, vid: str, seed: int, seconds: int) -> list[bytes]:
    """A vehicle's `seconds` one-reading batches (the load tester's readings), framed by its
    welcomed `client` session."""
    sim = SimVehicle(vid, "token", 1, 1.0, 0.0, NOW_MS - 60_000, seed=seed)
    out = []
    for q in range(1, seconds + 1):
        client.send_batch([sim.wire_reading(q)])
        out.append(client.data_to_send())
    return out


def _fleet(vehicles: int, seconds: int) -> tuple[list[ServerSession], list[list[bytes]], int]:
    """Each vehicle's server session after the welcome, and its frames, second by second."""
    sessions, frames = [], []
    zdict = None
    for i in range(vehicles):
        vid = f"bench-{i:05d}"
        client = ClientSession(vid, "token", epoch=1)
        server = ServerSession(credit=CREDIT)
        server.receive(client.data_to_send())
        server.accept(NOW_MS, credit=CREDIT)
        client.receive(server.data_to_send())
        zdict = server._decoder.zdict
        sessions.append(server)
        frames.append(_frames(client, vid, i, seconds))
    assert zdict is not None, "the sessions agreed a preset dictionary"
    return sessions, frames, zdict


def floor_round(frames: list[list[bytes]], zdict: int, seconds: int) -> float:
    """The libraries' own work for the same frames: cbor2 and zlib, no checks."""
    d = DICTIONARIES[zdict]
    loads, decompressobj, bits = cbor2.loads, zlib.decompressobj, -WINDOW_BITS
    n = 0
    t0 = time.thread_time()
    for s in range(seconds):
        for mine in frames:
            m = loads(mine[s][4:])
            readings = loads(decompressobj(bits, zdict=d).decompress(m["zd"]))
            n += len(readings)
    return (time.thread_time() - t0) / n


def ours_round(sessions: list[ServerSession], frames: list[list[bytes]], seconds: int,
               offset: int, stages: dict[str, float]) -> float:
    """The gateway's path for every vehicle's frame of each second; `offset` shifts the
    gateway's clock so every round's readings lie in its time window. Returns s per reading."""
    hub = Hub()
    n = 0
    total = 0.0
    clock = time.thread_time  # CPU time: a busy machine preempts, it does not bill
    for s in range(seconds):
        now = NOW_MS + offset + s * 1000
        committed = []
        t0 = clock()
        for server, mine in zip(sessions, frames, strict=True):
            for ev in server.receive(mine[s]):
                assert type(ev) is BatchReceived, ev
                good, dead, _ = validate_batch(ev.batch, server.hello.vehicle, now,
                                               DEFAULT_WINDOW, False, _never)
                committed.append((server, ev.batch, good))
        t1 = clock()
        rows = []
        for server, batch, good in committed:
            server.committed([r["q"] for r in batch.readings], CREDIT)
            if not server.data_to_send():
                raise AssertionError("no ack")
            rows += good
        t2 = clock()
        publish_positions(hub, rows)
        t3 = clock()
        n += len(rows)
        stages["in"] += t1 - t0
        stages["ack"] += t2 - t1
        stages["hub"] += t3 - t2
        total += t3 - t0
    return total / n


class _Event:
    """The QUIC library's stream-data event, as the stand-in library hands it over."""

    __slots__ = ("data", "end_stream", "stream_id")

    def __init__(self, data: bytes, stream_id: int = 0):
        self.data, self.end_stream, self.stream_id = data, False, stream_id


class _Other:
    """An event the connection does not handle here."""


class _Lib:
    """The stand-in QUIC library: the adapter's calls the connection makes, doing nothing."""

    StreamDataReceived = _Event
    HandshakeCompleted = ConnectionTerminated = _Other
    EDGE_OWNS_PEER_ADDRESS = False

    @staticmethod
    def _nothing(*_args, **_kwargs) -> None:
        return None

    advertise_max_ack_delay = delay_acks_up_to = trim_new_connection = _nothing
    trim_after_handshake = ack_with_data = _nothing


class _Quic:
    """The stand-in QUIC connection: what the gateway sends on its stream, recorded."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.sent.append(data)


class _Edge:
    """The stand-in UDP edge: the connections with datagrams due, sent (forgotten) at the
    end of the tick as the edge's flush would."""

    lib = _Lib

    def __init__(self) -> None:
        self.due: list = []

    def dirty(self, conn) -> None:
        self.due.append(conn)

    def flushed(self) -> int:
        n = len(self.due)
        for conn in self.due:
            conn._dirty = False
        self.due = []
        return n


class _Writer:
    """The stand-in writer: holds the submissions `add`ed; `commit` settles them all as the
    writer's loop does after a transaction."""

    full = False

    def __init__(self) -> None:
        self.stats = SimpleNamespace(backlog_rows=0)
        self.on_space = None
        self.subs: list = []

    def add(self, sub) -> None:
        self.stats.backlog_rows += len(sub.readings)
        self.subs.append(sub)

    def commit(self) -> None:
        subs, self.subs = self.subs, []
        self.stats.backlog_rows = 0
        for sub in subs:
            sub.settle(None)


class _Store:
    async def authenticate(self, vehicle: str, token: str) -> AuthResult:
        return AuthResult.OK


async def _open_whole(vehicles: int, seconds: int):
    """The gateway, its connections (each opened by its vehicle's hello through the same
    path) and each vehicle's frames, second by second."""
    writer, edge = _Writer(), _Edge()
    gw = Gateway(_Store(), writer, Hub())  # type: ignore[arg-type]
    gw.downlink = SimpleNamespace(advertised_by=_nowt, send_pending=_nowt)
    conns, frames = [], []
    for i in range(vehicles):
        vid = f"bench-{i:05d}"
        client = ClientSession(vid, "token", epoch=1)
        quic = _Quic()
        proto = GatewayProtocol(quic, edge, gateway=gw)
        proto.quic_event_received(_Event(client.data_to_send()))
        for _ in range(3):
            await asyncio.sleep(0)  # its hello's authentication
        client.receive(b"".join(quic.sent))
        quic.sent.clear()
        assert client.ready, "the connection welcomed its vehicle"
        conns.append(proto)
        frames.append(_frames(client, vid, i, seconds))
    edge.flushed()
    return gw, writer, edge, conns, frames


async def _nowt(*_args) -> None:
    return None


async def whole_round(gw, writer: _Writer, edge: _Edge, conns: list, frames: list[list[bytes]],
                      seconds: int, stages: dict[str, float]) -> float:
    """Each second: every vehicle's frame arrives on its connection, the writer commits them
    all, the tick ends (acks on the streams, the hub); s of thread CPU per reading."""
    clock = time.thread_time
    n = total = 0.0
    for s in range(seconds):
        t0 = clock()
        for proto, mine in zip(conns, frames, strict=True):
            proto.quic_event_received(_Event(mine[s]))
        t1 = clock()
        k = len(writer.subs)
        writer.commit()
        for _ in range(len(conns) // ACKS_PER_CALLBACK + 3):  # the tick's end: acks a
            await asyncio.sleep(0)  # piece per callback, the hub, the alert consumer
        t2 = clock()
        if edge.flushed() != len(conns) or k != len(conns):
            raise AssertionError("a batch without its ack")
        n += k
        stages["whole in"] += t1 - t0
        stages["whole commit to ack"] += t2 - t1
        total += t2 - t0
    for proto in conns:
        proto._quic.sent.clear()
    return total / n


def _never(rule: str) -> None:
    raise AssertionError(f"a valid reading refused ({rule})")


def _rewind(sessions: list[ServerSession]) -> None:
    """Each round receives the same frames again: the sessions forget what they acknowledged
    (the agent's next epoch would send them again the same way)."""
    for server in sessions:
        server.through = 0
        server.pending = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one more round of ours and of the whole path")
    return asyncio.run(_main(ap.parse_args()))


async def _main(a: argparse.Namespace) -> int:
    sessions, frames, zdict = _fleet(a.vehicles, a.seconds)
    gw, writer, edge, conns, whole_frames = await _open_whole(a.vehicles, a.seconds)
    gc_policy.after_start()  # as the gateway runs (backend/service.py)
    floors, ours, wholes = [], [], []
    best_stages: dict[str, float] = {}
    best_whole: dict[str, float] = {}
    n = a.vehicles * a.seconds
    for _ in range(a.rounds):
        floors.append(floor_round(frames, zdict, a.seconds))
        _rewind(sessions)
        stages = {"in": 0.0, "ack": 0.0, "hub": 0.0}
        ours.append(ours_round(sessions, frames, a.seconds, 0, stages))
        per_reading = {k: v / n for k, v in stages.items()}
        if not best_stages or sum(per_reading.values()) < sum(best_stages.values()):
            best_stages = per_reading
        _rewind([proto.session for proto in conns])
        stages = {"whole in": 0.0, "whole commit to ack": 0.0}
        wholes.append(await whole_round(gw, writer, edge, conns, whole_frames, a.seconds,
                                        stages))
        per_reading = {k: v / n for k, v in stages.items()}
        if not best_whole or sum(per_reading.values()) < sum(best_whole.values()):
            best_whole = per_reading
    f, o, w = min(floors), min(ours), min(wholes)
    print(f"{a.vehicles} vehicles × {a.seconds} one-reading batches, best of {a.rounds} "
          "interleaved rounds, µs per reading")
    print(f"  floor: zlib + cbor2.loads, no checks (baseline) {f * 1e6:8.2f}")
    print(f"  gateway application path                        {o * 1e6:8.2f}   "
          f"ratio {o / f:.2f}×")
    for k, v in best_stages.items():
        print(f"    {k:<44}{v * 1e6:8.2f}")
    print(f"  whole: stream data to the ack on the stream     {w * 1e6:8.2f}   "
          f"ratio {w / f:.2f}×")
    for k, v in best_whole.items():
        print(f"    {k:<44}{v * 1e6:8.2f}")
    if a.profile:
        _rewind(sessions)
        _rewind([proto.session for proto in conns])
        prof = cProfile.Profile()
        prof.enable()
        ours_round(sessions, frames, a.seconds, 0, {"in": 0.0, "ack": 0.0, "hub": 0.0})
        await whole_round(gw, writer, edge, conns, whole_frames, a.seconds,
                          {"whole in": 0.0, "whole commit to ack": 0.0})
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(35)
    return 0


if __name__ == "__main__":
    sys.exit(main())
