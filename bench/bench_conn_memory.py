"""Gateway memory per connected vehicle, by where it goes (Python heap, tracemalloc).

    .venv/bin/python bench/bench_conn_memory.py [--connections 500] [--quic aioquic,qh3]
        [--breakdown | --gateway]

The load tester measures the gateway's RSS growth per connected vehicle, which includes what
tracemalloc cannot see (OpenSSL's AEAD and header-protection contexts) and allocator slack.
This script shows where the Python heap part goes: it runs N complete sessions in memory with
the seam's sans-IO `QuicConnection` on both ends (each library named by --quic, each in a
fresh process; default: the process's library) (handshake, hello, welcome, one batch, its
ack), as the gateway holds them, drops the client ends, and groups what the server ends still
hold by source file. Baseline in the same run: the same N connections as bare QUIC (handshake
only, no geostream session, the library as it comes). Two gateway shapes, same run: an agent
of revision 4 (the session's DEFLATE stream, docs/protocol.md §3.1: an inflater per session)
and one of revision 5 (a preset dictionary, §3.2: none). qh3's native core holds its state
outside the Python heap: for it, the RSS row is the one that counts.

`--breakdown` splits one revision-5 gateway connection's RSS (each part in a fresh process):
the native core object itself (PyO3 keeps the Rust connection inline in the Python object:
its `__basicsize__`), the rest of the Python heap (tracemalloc), what native code keeps in
malloc (glibc's in-use bytes minus the Python objects big enough to be malloc'd), and the
allocator's slack (RSS minus all of that), with what `malloc_trim(0)` hands back.

`--gateway` measures the real gateway instead of a stand-in: bench/gateway_round.py's edge,
`GatewayProtocol`s, ingest, writer, SQLite store, alert engine and hub, N vehicles through
handshake, hello, welcome and four seconds of readings at 1 Hz, then the client ends dropped;
what the serving side still holds is its Python heap per connection (tracemalloc), by owner.
Baseline in the same run (a fresh process): the same N clients against the library's own
`QuicConnectionProtocol` (bare=True: no session, an ack-sized reply per batch). The native
part outside the Python heap is the breakdown's (the same core object), added for the
estimate of RSS per connected vehicle.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.pki import generate  # noqa: E402
from backend.quic_tuning import delay_acks  # noqa: E402
from geostream import ALPN  # noqa: E402
from geostream.quic import library  # noqa: E402
from geostream.session import ClientSession, ServerSession  # noqa: E402

SERVER = ("127.0.0.1", 4433)
CLIENT = ("127.0.0.1", 50000)
LIB = library()  # the QUIC library measured (--quic)


def _pump(a, b, a_addr, now: float) -> int:
    n = 0
    for data, _ in a.datagrams_to_send(now=now):
        b.receive_datagram(data, a_addr, now=now)
        n += 1
    return n


def one_session(server_cfg, client_cfg, now: float, geostream: bool,
                zdicts: tuple[int, ...] | None = None):
    """`zdicts`: the preset dictionaries the agent offers (None: every one, revision 5;
    `()`: an agent of revision 4, which compresses with the session's DEFLATE stream)."""
    client = LIB.QuicConnection(configuration=client_cfg)
    client.connect(SERVER, now=now)
    first = client.datagrams_to_send(now=now)
    server = LIB.QuicConnection(configuration=server_cfg,
                                original_destination_connection_id=LIB.destination_cid(
                                    first[0][0], 8))
    delay_acks(LIB, server)
    if geostream:
        LIB.trim_new_connection(server)  # as the gateway does (GatewayProtocol)
    for data, _ in first:
        server.receive_datagram(data, CLIENT, now=now)
    for _ in range(6):
        now += 0.03  # past the delayed-ACK deadline, as the timers would fire
        _pump(server, client, SERVER, now)
        _pump(client, server, CLIENT, now)
    session = None
    if geostream:
        LIB.trim_after_handshake(server)  # what the gateway does on HandshakeCompleted
        cs = ClientSession("veh-00001", "t" * 43, epoch=7, zdicts=zdicts)
        sid = client.get_next_available_stream_id()
        client.send_stream_data(sid, cs.data_to_send())
        session = ServerSession()
        for step in range(4):
            now += 0.03
            _pump(client, server, CLIENT, now)
            while (ev := server.next_event()) is not None:
                if isinstance(ev, LIB.StreamDataReceived):
                    session.receive_data(ev.data)
                    if session.hello is not None and not session.authenticated:
                        session.accept(0, credit=512)
                    elif session.pending:
                        session.committed([1], credit=512)
                    server.send_stream_data(ev.stream_id, session.data_to_send())
            _pump(server, client, SERVER, now)
            while (ev := client.next_event()) is not None:
                if isinstance(ev, LIB.StreamDataReceived):
                    cs.receive_data(ev.data)
            if step == 0 and cs.ready:
                cs.send_batch([{"q": 1, "ts": 1_790_000_000_000, "k": "pos", "lat": 53.5,
                                "lon": 9.9, "alt": 12.5, "spd": 42.0, "crs": 90.0, "fix": 1,
                                "sat": 9, "hdop": 0.9}])
                client.send_stream_data(sid, cs.data_to_send())
        assert session.through == 1, "the session did not complete"
    return client, server, session


def _rss() -> int:
    """This process's resident set in bytes (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _configs(certs: dict):
    server_cfg = LIB.QuicConfiguration(is_client=False, alpn_protocols=[ALPN], idle_timeout=240)
    server_cfg.load_cert_chain(certs["cert"], certs["key"])
    client_cfg = LIB.QuicConfiguration(is_client=True, alpn_protocols=[ALPN], idle_timeout=240,
                                       server_name="localhost")
    client_cfg.load_verify_locations(cafile=certs["ca"])
    return server_cfg, client_cfg


def measure_rss(n: int, certs: dict, zdicts: tuple[int, ...] | None = None) -> float:
    """RSS growth per gateway connection without tracemalloc (whose own records would count):
    the Python heap plus what it cannot see (OpenSSL contexts, allocator slack). Client ends
    are dropped as they are made, so what stays is the server ends."""
    server_cfg, client_cfg = _configs(certs)
    gc.collect()
    kept = []
    one_session(server_cfg, client_cfg, now=999.0, geostream=True,
                zdicts=zdicts)  # warm caches and pools
    before = _rss()
    for i in range(n):
        _, s, sess = one_session(server_cfg, client_cfg, now=1000.0 + i, geostream=True,
                                 zdicts=zdicts)
        kept.append((s, sess))
    gc.collect()
    return (_rss() - before) / n


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): the main and thread arenas' totals."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _malloc_state() -> tuple[int, int]:
    """(bytes malloc has handed out and not had back, free bytes it keeps in its arenas)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def measure_native(n: int, certs: dict) -> dict[str, float]:
    """Per revision-5 gateway connection, without tracemalloc: RSS growth, malloc's in-use and
    free growth, and RSS growth once `malloc_trim(0)` has returned what it can."""
    server_cfg, client_cfg = _configs(certs)
    one_session(server_cfg, client_cfg, now=999.0, geostream=True)
    gc.collect()
    rss0, (used0, free0) = _rss(), _malloc_state()
    kept = [one_session(server_cfg, client_cfg, now=1000.0 + i, geostream=True)[1:]
            for i in range(n)]
    gc.collect()
    rss1, (used1, free1) = _rss(), _malloc_state()
    ctypes.CDLL(None).malloc_trim(0)
    rss2 = _rss()
    assert len(kept) == n
    return {"rss": (rss1 - rss0) / n, "malloc_used": (used1 - used0) / n,
            "malloc_free": (free1 - free0) / n, "rss_trimmed": (rss2 - rss0) / n}


# Python's own allocator serves requests up to this size from its pools; bigger ones are malloc's
PYMALLOC_MAX = 512


def measure_python(n: int, certs: dict) -> dict[str, float]:
    """Per revision-5 gateway connection, by tracemalloc: the Python heap, the part of it in
    objects malloc serves (> PYMALLOC_MAX), and the native core object's inline size."""
    server_cfg, client_cfg = _configs(certs)
    one_session(server_cfg, client_cfg, now=999.0, geostream=True)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    base = tracemalloc.get_traced_memory()[0]
    kept = [one_session(server_cfg, client_cfg, now=1000.0 + i, geostream=True)[1:]
            for i in range(n)]
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - base
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    big = sum(t.size for t in after.traces if t.size > PYMALLOC_MAX) - sum(
        t.size for t in before.traces if t.size > PYMALLOC_MAX)
    core = getattr(kept[0][0], "_core", None)
    inline = type(core).__basicsize__ if core is not None and LIB.NAME == "qh3" else 0
    return {"heap": heap / n, "heap_malloced": big / n, "core_inline": float(inline)}


def breakdown(n: int) -> None:
    """Print where one revision-5 gateway connection's RSS goes (see the module's docstring)."""
    import subprocess

    def child(part: str) -> dict[str, float]:
        out = subprocess.run([sys.executable, __file__, "--connections", str(n), "--quic",
                              LIB.NAME, "--part-of", part], check=True, capture_output=True,
                             text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    native, py = child("native"), child("python")
    kb = 1024
    outside = native["malloc_used"] - py["heap_malloced"]
    pools = py["heap"] - py["heap_malloced"]
    slack = native["rss"] - native["malloc_used"] - pools
    print(f"{n} server-side {LIB.NAME} gateway connections (revision-5 agents), KB per connection")
    print(f"  {native['rss'] / kb:6.1f}  RSS growth")
    print(f"  {py['core_inline'] / kb:6.1f}    native core object, inline in its Python object")
    rest = py["heap"] - py["core_inline"]
    print(f"  {rest / kb:6.1f}    rest of the Python heap (tracemalloc)")
    print(f"  {outside / kb:6.1f}    native heap outside Python (malloc in use "
          f"{native['malloc_used'] / kb:.1f} minus Python objects > {PYMALLOC_MAX} B "
          f"{py['heap_malloced'] / kb:.1f})")
    print(f"  {slack / kb:6.1f}    allocator slack (RSS minus the above; malloc's free chunks grew "
          f"{native['malloc_free'] / kb:.1f})")
    print(f"  {native['rss_trimmed'] / kb:6.1f}  RSS growth after malloc_trim(0)")


# tracemalloc's frames per allocation for --gateway: deep enough to see which side made it
GATEWAY_TRACE_DEPTH = 16
# seconds of 1 Hz readings before the snapshot: every vehicle's first batches committed, acked,
# evaluated and published (the per-vehicle state of each stage exists)
GATEWAY_DRIVE_S = 4
# polls (0.1 s apart) for the gateway to go quiet after the last readings: bounded
QUIET_POLLS = 100


def _client_lines() -> list[tuple[int, int]]:
    """Line ranges of bench/gateway_round.py that run client ends only: what they allocate is
    not the gateway's (the client ends are dropped before the snapshot; caches of theirs that
    outlive them, e.g. the agent's primed DEFLATE compressor, are left out by this)."""
    import inspect

    from bench import gateway_round

    spans = []
    for fn in (gateway_round._Vehicle, gateway_round.Run._send_one):
        lines, first = inspect.getsourcelines(fn)
        spans.append((first, first + len(lines)))
    return spans


def _owner(frames, client_spans, core_line: int) -> str | None:
    """Who holds an allocation, by its traceback (outermost first): None for a client end's;
    the QUIC core object; else the innermost frame's module in the repo or the library."""
    names = []
    for f in frames:
        name = f.filename.replace(os.sep, "/")
        if name.endswith("bench/gateway_round.py") and any(
                a <= f.lineno < b for a, b in client_spans):
            return None
        names.append((name, f.lineno))
    for name, line in names:
        if name.endswith("qh3/quic/connection.py") and line == core_line:
            return "qh3 native core object (inline)"
    for name, _ in reversed(names):
        for marker in ("aioquic/", "qh3/", "geostream/", "backend/", "asyncio/"):
            if marker in name:
                return marker + name.split(marker, 1)[1]
    return "other"


def _core_line() -> int:
    """The line of qh3's facade that builds its native core (`self._core = QuicConnectionCore(`):
    the allocation of the core object, whose Rust state PyO3 keeps inline."""
    import inspect

    facade = [k for k in LIB.QuicConnection.__mro__ if k.__module__ == "qh3.quic.connection"]
    if not facade:
        return -1
    for i, text in enumerate(Path(inspect.getsourcefile(facade[0])).read_text().splitlines(), 1):
        if "self._core = QuicConnectionCore(" in text:
            return i
    return -1




async def _gateway_heap(n: int, bare: bool, certs: dict) -> dict[str, float]:
    """The serving side's Python heap per connection, by owner (see the module docstring)."""
    import asyncio

    from bench.gateway_round import Run

    with tempfile.TemporaryDirectory() as d:
        spans, core_line = _client_lines(), _core_line()
        gc.collect()
        tracemalloc.start(GATEWAY_TRACE_DEPTH)
        before = tracemalloc.take_snapshot()
        run = Run(LIB, n, certs, bare, None)
        await run.setup(Path(d))
        await run._drive(GATEWAY_DRIVE_S)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.5)  # the last batches' commits and acks
        for v in run.vehicles:
            v.pump(loop.time())
        if not bare:  # quiet: every batch committed and acked, its alerts evaluated
            ingest = run.gateway.ingest
            await ingest.settled(10)
            for _ in range(QUIET_POLLS):
                if (ingest._alert_task is None and not ingest._alert_rows
                        and not ingest._tick_rows and run.writer.stats.backlog_rows == 0):
                    break
                await asyncio.sleep(0.1)
        servers = [v.proto for v in run.vehicles]  # the bare ones; None for the gateway's
        run.vehicles = []  # the client ends go
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        owners: dict[str, float] = defaultdict(float)
        for stat in after.compare_to(before, "traceback"):
            owner = _owner(stat.traceback, spans, core_line)
            if owner is not None:
                owners[owner] += stat.size_diff / n
        assert len(servers) == n
        if bare:
            run.vehicles = []
        else:
            await run.close()
    return dict(owners)


def _gateway_in_child(n: int, lib: str, shape: str) -> dict[str, float]:
    """`_gateway_heap` in a fresh process of its own."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--connections", str(n), "--quic", lib,
                          "--gateway-of", shape], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gateway(n: int) -> None:
    """Print the real gateway's memory per connection against the bare library's (same run)."""
    kb = 1024
    bare, gw = (_gateway_in_child(n, LIB.NAME, shape) for shape in ("bare", "gateway"))
    native = None
    if LIB.NAME == "qh3":  # what the core keeps outside the Python heap (the breakdown's)
        import subprocess

        parts = []
        for part in ("native", "python"):
            out = subprocess.run([sys.executable, __file__, "--connections", str(n), "--quic",
                                  LIB.NAME, "--part-of", part], check=True,
                                 capture_output=True, text=True)
            parts.append(json.loads(out.stdout.strip().splitlines()[-1]))
        native = parts[0]["malloc_used"] - parts[1]["heap_malloced"]
    total_bare, total_gw = sum(bare.values()), sum(gw.values())
    print(f"{n} {LIB.NAME} connections, serving side after the client ends went, KB per "
          "connection (Python heap, tracemalloc)")
    print(f"  {total_bare / kb:6.1f}  bare library (its own protocol, no session: baseline)")
    print(f"  {total_gw / kb:6.1f}  gateway (edge, session, ingest, alerts, hub)   ratio "
          f"{total_gw / total_bare:.2f}")
    for owner, size in sorted(gw.items(), key=lambda kv: -kv[1]):
        if abs(size) >= 8:
            print(f"    {size / kb:6.2f}  {owner}")
    if native is not None:
        print(f"  {native / kb:6.1f}  + the core's native heap outside Python (breakdown)")
        print(f"  {(total_gw + native) / kb:6.1f}  gateway held in total (before allocator "
              "slack)")


def _rss_in_child(n: int, lib: str, shape: str) -> float:
    """`measure_rss` in a fresh process of its own."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--connections", str(n), "--quic", lib,
                          "--rss-of", shape], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(n: int, geostream: bool, certs: dict,
            zdicts: tuple[int, ...] | None = None) -> tuple[float, dict[str, float]]:
    server_cfg, client_cfg = _configs(certs)
    gc.collect()
    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    base = tracemalloc.get_traced_memory()[0]
    kept, clients = [], []
    for i in range(n):
        c, s, sess = one_session(server_cfg, client_cfg, now=1000.0 + i, geostream=geostream,
                                 zdicts=zdicts)
        kept.append((s, sess))
        clients.append(c)
    del clients, c
    gc.collect()
    total = (tracemalloc.get_traced_memory()[0] - base) / n
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_file: dict[str, float] = defaultdict(float)
    for stat in after.compare_to(before, "filename"):
        name = stat.traceback[0].filename
        for marker in ("aioquic/", "qh3/", "geostream/", "cryptography/", "backend/"):
            if marker in name:
                name = marker + name.split(marker, 1)[1]
                break
        else:
            name = Path(name).name
        by_file[name] += stat.size_diff / n
    assert len(kept) == n
    return total, dict(by_file)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--quic", default="",
                    help="QUIC libraries, comma-separated, each in a fresh process (default: "
                         "the process's)")
    ap.add_argument("--breakdown", action="store_true",
                    help="split one gateway connection's RSS by owner (module docstring)")
    ap.add_argument("--gateway", action="store_true",
                    help="the real gateway's memory per connection (module docstring)")
    ap.add_argument("--gateway-of", choices=("bare", "gateway"), help=argparse.SUPPRESS)
    ap.add_argument("--rss-of", choices=("old", "new"), help=argparse.SUPPRESS)  # a child's
    ap.add_argument("--part-of", choices=("native", "python"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    names = [n for n in a.quic.split(",") if n]
    if len(names) > 1:  # one process each: RSS growth is only fair in a fresh heap
        import subprocess

        for name in names:
            subprocess.run([sys.executable, __file__, "--connections", str(a.connections),
                            "--quic", name, *(["--breakdown"] if a.breakdown else []),
                            *(["--gateway"] if a.gateway else [])],
                           check=True)
        return 0
    global LIB
    LIB = library(names[0] if names else None)
    if a.breakdown and a.part_of is None:
        breakdown(a.connections)
        return 0
    if a.gateway and a.gateway_of is None:
        gateway(a.connections)
        return 0
    with tempfile.TemporaryDirectory() as d:
        certs = generate(d, ["localhost", "127.0.0.1"])
        if a.gateway_of is not None:  # a child measuring one gateway shape
            import asyncio

            print(json.dumps(asyncio.run(_gateway_heap(a.connections, a.gateway_of == "bare",
                                                       certs))))
            return 0
        if a.part_of is not None:  # a child measuring one part of the breakdown
            part = measure_native if a.part_of == "native" else measure_python
            print(json.dumps(part(a.connections, certs)))
            return 0
        if a.rss_of is not None:  # a child measuring one shape's RSS
            print(measure_rss(a.connections, certs, () if a.rss_of == "old" else None))
            return 0
        # each shape's RSS in a fresh process: a heap that grew and shrank would hide it
        rss, rss_new = (_rss_in_child(a.connections, LIB.NAME, shape) for shape in ("old", "new"))
        bare, _ = measure(a.connections, False, certs)
        old, _ = measure(a.connections, True, certs, zdicts=())
        full, files = measure(a.connections, True, certs)
    print(f"{a.connections} server-side {LIB.NAME} connections held in memory (Python heap, "
          "tracemalloc)")
    print(f"{'bare QUIC connection after handshake (baseline)':<52}{bare / 1024:8.1f} KB")
    print(f"{'gateway, revision-4 agent (session DEFLATE stream)':<52}{old / 1024:8.1f} KB"
          f"   ratio {old / bare:.2f}")
    print(f"{'gateway, revision-5 agent (preset dictionary)':<52}{full / 1024:8.1f} KB"
          f"   ratio {full / bare:.2f}")
    print(f"{'RSS growth per connection, revision-4 agent':<52}{rss / 1024:8.1f} KB"
          f"   outside the Python heap ≈ {(rss - old) / 1024:.1f} KB")
    print(f"{'RSS growth per connection, revision-5 agent':<52}{rss_new / 1024:8.1f} KB"
          f"   outside the Python heap ≈ {(rss_new - full) / 1024:.1f} KB")
    print("where it goes, revision-5 agent (KB per connection):")
    for name, size in sorted(files.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {size / 1024:7.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
