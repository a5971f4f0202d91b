"""The web app under a big fleet: hub → WebSocket client latency with N clients, and the
browser's frame time with the whole fleet on the map.

    .venv/bin/python bench/bench_webapp.py [latency|browser|all] [--vehicles 10000]
        [--clients 100] [--seconds 10] [--skip-streamed] [--deflate]

Positions are injected where the gateway hands committed positions to the hub (`Hub.position`
with `position_feature`, the call in backend/gateway.py), stamped with the wall clock at that
call: real QUIC at 10,000 vehicles/s is bench_loadtest's job, not this 2-core machine's beside
100 clients. The clients run in a child process (one asyncio loop, aiohttp) and subtract the
stamp on receipt (a batch frame's positions all with its oldest's stamp).

latency: the real HTTP app (make_app: access middleware, /ws, hub) against a baseline in the
same run: a plain WebSocket broadcast (no auth, no filtering, no coalescing: each position
encoded once and queued to every client, unbounded), the hub streaming one message per
position and the hub batching (`"batch": true`: one frame per tick per view). Reports
latency p50/p99 of what arrived, how much arrived, what the hub coalesced or dropped, and
CPU per message (the hub's `position()` fan-out alone, and the whole server process per
delivered position).
browser: bench_browser.py (Debian chromium, SwiftShader WebGL, as the tests run it): frame
intervals, main-thread / worker / GPU-process busy time and long tasks; baselines: the map
without vehicles and the same map holding the fleet with updates stopped, idle and panned.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from backend.auth import accounts  # noqa: E402
from backend.hub import ALL, Hub, Message, position_feature  # noqa: E402
from backend.store import open_store  # noqa: E402
from backend.web import make_app  # noqa: E402
from geostream.clock import wall_ms  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
PASSWORD = "bench password 1234"
FEED_SLICES = 10  # a tenth of the fleet every 100 ms: 1 Hz each, spread over the second
CENTER = (53.55, 10.0)  # Hamburg, where the demo drives
WARMUP_S = 2.0  # connections up, first snapshot delivered: not measured
DRAIN_S = 3.0  # after the feed stops, late messages of the window still count
STEP_TIMEOUT_S = 90  # bound on every browser call and on the clients' child process
# Clients that inflate, parse and time what they get (the others only read it): 100 browsers'
# parsing (2.2 MB/s of JSON each at 10,000 vehicles) would not fit beside the server here.
MEASURED_CLIENTS = 10
TIME_RE = re.compile(r'"time":"([^"]{24})"')
TIME_KEY = '"time":"'

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Fleet:
    """n vehicles on small circles around CENTER, each at 1 Hz."""

    def __init__(self, n: int):
        rnd = random.Random(7)
        self.homes = [(f"v{i:05d}", CENTER[0] + rnd.uniform(-0.15, 0.15),
                       CENTER[1] + rnd.uniform(-0.25, 0.25), rnd.uniform(0, 2 * math.pi))
                      for i in range(n)]
        self.seq = 0

    def features(self, part: int, now_ms: int):
        self.seq += 1
        for vid, lat, lon, phase in self.homes[part::FEED_SLICES]:
            a = phase + now_ms / 60_000  # one lap of a ~300 m circle a minute
            yield vid, position_feature(vid, now_ms, lat + 0.003 * math.sin(a),
                                        lon + 0.005 * math.cos(a), 30.0,
                                        (math.degrees(a) + 90) % 360, self.seq)


async def feed(fleet: Fleet, hand_over, seconds: float) -> dict:
    """Hand every vehicle's position over once a second for `seconds`; the CPU time spent
    inside `hand_over` (the hub's fan-out, or the baseline's) is counted."""
    handed, inside = 0, 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for part in range(FEED_SLICES):
            t0 = time.monotonic()
            now_ms = wall_ms()  # the stamp: the moment of hand-over
            for vid, feature in fleet.features(part, now_ms):
                c0 = time.thread_time()
                hand_over(vid, now_ms, feature)
                inside += time.thread_time() - c0
                handed += 1
            await asyncio.sleep(max(0.0, 1 / FEED_SLICES - (time.monotonic() - t0)))
    return {"handed": handed, "inside_s": inside}


# --- the clients' child process ---------------------------------------------------------------

_STAMPS: dict[str, float] = {}  # the feed stamps a tenth of the fleet with one time


def _stamps_ms(text: str) -> tuple[float | None, int]:
    """The device time (ms) of the oldest position in a message and how many it holds. A batch
    frame lists its vehicles in the order they changed, so each of its positions is counted
    with the oldest's latency: an upper bound, and one search per frame rather than one per
    position (with 100 clients in one process the per-position parse fell behind the feed)."""
    m = TIME_RE.search(text)
    if m is None:
        return None, 0
    iso = m.group(1)
    ms = _STAMPS.get(iso)
    if ms is None:
        if len(_STAMPS) > 100_000:
            _STAMPS.clear()
        ms = _STAMPS[iso] = dt.datetime.fromisoformat(iso).timestamp() * 1000
    return ms, text.count(TIME_KEY)


async def _client(url: str, token: str, window: list[float], lat: list[float],
                  stop: asyncio.Event, ready: asyncio.Event, count: list[int],
                  batch: bool, deflate: bool, nbytes: list[int], measure: bool) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        # deflate: offer permessage-deflate as browsers do (the plain broadcast accepts it, the
        # hub declines it) and ask the hub for deflated batch frames, as the web app does
        async with http.ws_connect(url, max_msg_size=0, compress=15 if deflate else 0) as ws:
            await ws.send_json({"op": "subscribe", "topic": ALL, "batch": batch,
                                "deflate": deflate})
            count[0] += 1
            if count[0] == count[1]:
                ready.set()
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.receive(), 0.5)
                except TimeoutError:
                    continue
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    return
                if not measure:
                    continue  # takes the server's bytes like the others, parses nothing
                text = (zlib.decompress(msg.data, -zlib.MAX_WBITS).decode()
                        if msg.type == aiohttp.WSMsgType.BINARY else msg.data)
                stamp, n = _stamps_ms(text)
                if stamp is not None and window and window[0] <= stamp < window[1]:
                    lat.extend([time.time() * 1000 - stamp] * n)
                    # payload as the application got it: after permessage-deflate, inflated
                    nbytes[0] += len(msg.data)


async def clients_main(url: str, token: str, n: int, seconds: float, batch: bool,
                       deflate: bool = False) -> None:
    """Connect n clients, print "ready", measure the window [ready+WARMUP_S, +seconds),
    print one JSON line of results. Only `MEASURED_CLIENTS` of them inflate and parse what
    they get; the rest read every message and drop it, so the server does all n clients' work
    while the one client process (on the server's 2 cores) does not do n browsers' work."""
    measured = min(n, MEASURED_CLIENTS)
    stop, ready = asyncio.Event(), asyncio.Event()
    window: list[float] = []
    lat: list[float] = []
    count = [0, n]
    nbytes = [0]
    tasks = [asyncio.get_running_loop().create_task(
        _client(url, token, window, lat, stop, ready, count, batch, deflate, nbytes,
                measure=i < measured))
        for i in range(n)]
    await asyncio.wait_for(ready.wait(), 60)
    start = time.time() * 1000 + WARMUP_S * 1000
    window[:] = [start, start + seconds * 1000]
    print("ready", flush=True)
    await asyncio.sleep(WARMUP_S + seconds + DRAIN_S)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"received": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
                      "max": max(lat, default=float("nan")),
                      "bytes_per_client_s": nbytes[0] / measured / seconds,
                      "measured": measured}), flush=True)


async def with_clients(url: str, token: str, n: int, seconds: float, fleet: Fleet,
                       hand_over, batch: bool = False, deflate: bool = False) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "_clients", "--url", url,
        "--clients", str(n), "--seconds", str(seconds), *(["--batch"] if batch else []),
        *(["--deflate"] if deflate else []),
        stdout=subprocess.PIPE, env={**os.environ, "FLEET_API_TOKEN": token})  # not in argv
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"ready", line
        c0, m0 = cpu_s(), time.monotonic()
        fed = await feed(fleet, hand_over, WARMUP_S + seconds)
        cpu = cpu_s() - c0
        wall = time.monotonic() - m0
        out = json.loads(await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT_S))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return {**out, **fed, "cpu_s": cpu, "wall_s": wall,
            "expected": len(fleet.homes) * seconds * out["measured"],
            "delivered": out["received"] * n / out["measured"]}  # every client got as much


# --- the baseline: a plain broadcast ---------------------------------------------------------

class Broadcast:
    """Every position encoded once and queued to every client: no auth, no per-client filter,
    no coalescing, unbounded queues."""

    def __init__(self):
        self.queues: set[asyncio.Queue] = set()

    def hand_over(self, vehicle: str, time_ms: int, feature: dict) -> None:
        text = Message(topic=ALL, feature=feature).text
        for q in self.queues:
            q.put_nowait(text)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        q: asyncio.Queue = asyncio.Queue()
        self.queues.add(q)

        async def send():
            while True:
                await ws.send_str(await q.get())

        sender = asyncio.get_running_loop().create_task(send())
        try:
            async for _ in ws:
                pass
        finally:
            self.queues.discard(q)
            sender.cancel()
        return ws


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"127.0.0.1:{port}"


async def fleet_app(tmp: Path):
    store = open_store(f"sqlite://{tmp / 'fleet.db'}")
    await store.open()
    await accounts.add_user(store, "bench", "admin", PASSWORD)
    _, token = await accounts.add_token(store, "bench", "bench")
    hub = Hub()
    app = make_app(hub, store, lambda: {"hub": hub.stats()})
    return store, hub, app, token


def row(name: str, r: dict, published: int) -> str:
    pct_recv = 100 * r["received"] / r["expected"]
    return (f"| {name} | {r['p50']:.0f} / {r['p99']:.0f} / {r['max']:.0f} ms | "
            f"{r['received']:,} of {r['expected']:,.0f} ({pct_recv:.0f} %) | "
            f"{1e6 * r['inside_s'] / max(1, published):.1f} µs | "
            f"{1e6 * r['cpu_s'] / max(1, r['delivered']):.1f} µs | "
            f"{100 * r['cpu_s'] / r['wall_s']:.0f} % | "
            f"{r['bytes_per_client_s'] / 1000:,.0f} kB/s |")


async def latency(args) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        store, hub, app, token = await fleet_app(Path(d))
        runner, addr = await serve(app)
        bc = Broadcast()
        base_app = web.Application()
        base_app.router.add_get("/ws", bc.handler)
        base_runner, base_addr = await serve(base_app)
        fleet = Fleet(args.vehicles)
        try:
            base = await with_clients(f"ws://{base_addr}/ws", token, args.clients,
                                      args.seconds, fleet, bc.hand_over, deflate=args.deflate)
            await base_runner.cleanup()  # its backlog must not compete with the hub's phase
            bc.queues.clear()
            runs = {}
            for mode in ("streamed", "batched"):
                if mode == "streamed" and args.skip_streamed:
                    continue
                before = hub.stats()
                got = await with_clients(f"ws://{addr}/ws", token, args.clients,
                                         args.seconds, fleet, hub.position,
                                         batch=mode == "batched", deflate=args.deflate)
                runs[mode] = (got, before, hub.stats())
        finally:
            await runner.cleanup()
            await base_runner.cleanup()
            await store.close()
    lines = [
        f"{args.vehicles} vehicles at 1 Hz handed to the hub, {args.clients} WebSocket clients "
        f"on {ALL} (child process; {min(args.clients, MEASURED_CLIENTS)} of them parse and time "
        f"what they get), {args.seconds:g} s measured after {WARMUP_S:g} s warm-up",
        "",
        "| server | latency p50 / p99 / max | positions received by the clients | "
        "CPU in hand-over per position | server CPU per delivered position | server CPU | "
        "WebSocket payload per client |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        row("plain broadcast (baseline)", base, base["handed"]),
    ]
    notes = [""]
    for mode, (got, before, after) in runs.items():
        published = after["published"] - before["published"]
        lines.append(row(f"hub, {mode} (make_app: auth, /ws, filter, coalescing)", got,
                         published))
        notes.append(
            f"hub {mode}: published {published:,}, frames {after['frames'] - before['frames']:,}"
            f", coalesced {after['coalesced'] - before['coalesced']:,}, dropped "
            f"{after['dropped'] - before['dropped']:,}, clients given up "
            f"{after['disconnected'] - before['disconnected']}")
    return lines + notes


async def browser(args) -> list[str]:
    """The browser's frame time and main-thread time: bench_browser.py's phases."""
    from bench.bench_browser import run

    return await run(args.vehicles, args.seconds, [9, 14], profile=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="all",
                    choices=["all", "latency", "browser", "_clients"])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--url")
    ap.add_argument("--token", help="deprecated (it shows in ps): set FLEET_API_TOKEN")
    ap.add_argument("--batch", action="store_true", help="(_clients) subscribe batched")
    ap.add_argument("--deflate", action="store_true",
                    help="clients offer permessage-deflate, as browsers do, and ask the hub "
                         "for deflated batch frames, as the web app does")
    ap.add_argument("--skip-streamed", action="store_true",
                    help="latency: measure the hub batched only (the streamed phase is slow)")
    a = ap.parse_args()
    if a.token:
        print("bench_webapp: --token is deprecated (it shows in ps): set FLEET_API_TOKEN",
              file=sys.stderr)
    if a.what == "_clients":
        token = a.token or os.environ.get("FLEET_API_TOKEN", "")
        asyncio.run(clients_main(a.url, token, a.clients, a.seconds, a.batch, a.deflate))
        return
    load = Path("/proc/loadavg").read_text().split()[:3]
    cores = subprocess.run(["nproc"], text=True, capture_output=True).stdout.strip()
    print(f"load average before: {' '.join(load)} ({cores} cores)")
    if a.what in ("all", "latency"):
        print("\n".join(asyncio.run(latency(a))))
    if a.what in ("all", "browser"):
        print("\n".join(asyncio.run(browser(a))))
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
