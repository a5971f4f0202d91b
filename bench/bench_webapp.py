"""The web app under a big fleet: browser frame time with 10,000 vehicles moving at 1 Hz, and
hub → client latency with N WebSocket clients.

A real backend (in this process: gateway, store, hub, aiohttp) gets synthetic positions straight
into its hub (`Hub.position`, what the gateway calls after a commit), stamped with the time they
were handed over; the app in Debian's chromium (SwiftShader WebGL, as the tests run it) and N
plain aiohttp WebSocket clients on `live_updates:all` subtract that stamp on receipt.
Baseline in the same run: the same map with no vehicles.

    .venv/bin/python bench/bench_webapp.py [--vehicles 10000] [--clients 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from backend.auth import accounts  # noqa: E402
from backend.config import BackendConfig  # noqa: E402
from backend.hub import position_feature  # noqa: E402
from backend.pki import generate  # noqa: E402
from backend.service import Backend  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
PASSWORD = "bench password 1234"
FEED_SLICES = 10  # a tenth of the fleet every 100 ms: 1 Hz each, spread over the second
CENTER = (53.55, 10.0)  # Hamburg, where the demo drives

# in the page: frame intervals, source updates, and hub→browser latency of every position
PROBE = """() => {
  const app = window.fleetApp;
  const probe = { frames: [], lat: [], received: 0 };
  const onFeature = app.socket.onFeature;
  app.socket.onFeature = (f) => {
    probe.received++;
    probe.lat.push(Date.now() - Date.parse(f.properties.time));
    onFeature(f);
  };
  let last = performance.now();
  const tick = (t) => { probe.frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.benchProbe = probe;
}"""
PAN = """() => {
  window.benchPan = true;
  const step = () => { if (!window.benchPan) return; fleetApp.map.panBy([2, 0], { duration: 0 });
                       requestAnimationFrame(step); };
  requestAnimationFrame(step);
}"""
TAKE = """() => {
  const p = window.benchProbe;
  const out = { frames: p.frames, lat: p.lat, received: p.received,
                updates: window.fleetApp.live.frames, build_ms: window.fleetApp.live.lastBuildMs,
                vehicles: window.fleetApp.fleet.vehicles.size };
  p.frames = []; p.lat = []; p.received = 0;
  return out;
}"""


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def feed(backend: Backend, n: int, stop: asyncio.Event, sent: list[int]) -> None:
    """n vehicles on small circles around CENTER, each at 1 Hz, stamped at hand-over."""
    rnd = random.Random(7)
    homes = [(CENTER[0] + rnd.uniform(-0.15, 0.15), CENTER[1] + rnd.uniform(-0.25, 0.25),
              rnd.uniform(0, 2 * math.pi)) for _ in range(n)]
    seq = 0
    while not stop.is_set():
        for part in range(FEED_SLICES):
            t0 = time.monotonic()
            now_ms = time.time_ns() // 1_000_000
            seq += 1
            for i in range(part, n, FEED_SLICES):
                lat, lon, phase = homes[i]
                a = phase + now_ms / 60_000  # one lap of a ~300 m circle a minute
                vid = f"v{i:05d}"
                backend.hub.position(vid, now_ms, position_feature(
                    vid, now_ms, lat + 0.003 * math.sin(a), lon + 0.005 * math.cos(a),
                    30.0, (math.degrees(a) + 90) % 360, seq))
                sent[0] += 1
            await asyncio.sleep(max(0.0, 1 / FEED_SLICES - (time.monotonic() - t0)))
            if stop.is_set():
                return


async def ws_client(url: str, token: str, lat: list[float], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_json({"op": "subscribe", "topic": "live_updates:all"})
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.receive(), 1.0)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                m = json.loads(msg.data)
                if "feature" in m:
                    t = m["feature"]["properties"]["time"]
                    sent_ms = _iso_ms(t)
                    lat.append(time.time() * 1000 - sent_ms)


def _iso_ms(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def summary(name: str, sample: dict, seconds: float) -> str:
    f = sample["frames"][5:]  # the first frames after a phase change are not steady
    fps = len(f) / seconds if f else 0
    lat = sample["lat"]
    return (f"{name:<34} {fps:6.1f} fps  frame p50 {pct(f, 50):6.1f} ms  p95 {pct(f, 95):6.1f}"
            f"  p99 {pct(f, 99):6.1f}  max {max(f, default=0):6.0f} ms | "
            f"{sample['received']:>7} positions recv"
            + (f", latency p50 {pct(lat, 50):5.0f} p99 {pct(lat, 99):5.0f} ms" if lat else ""))


async def run(args) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
        port = free_port()
        backend = Backend(BackendConfig(db=f"sqlite://{tmp / 'fleet.db'}", quic_host="127.0.0.1",
                                        quic_port=free_port(socket.SOCK_DGRAM), http_port=port,
                                        cert=certs["cert"], key=certs["key"]))
        await backend.start()
        await accounts.add_user(backend.store, "bench", "admin", PASSWORD)
        _, token = await accounts.add_token(backend.store, "bench", "bench")
        base = f"http://127.0.0.1:{port}"
        stop = asyncio.Event()
        sent = [0]
        lines = [f"{args.vehicles} vehicles at 1 Hz into the hub, {args.seconds:.0f} s per phase,"
                 " chromium 1366x768 SwiftShader"]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            await page.goto(base + "/login")
            await page.fill("#username", "bench")
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60000)
            await page.evaluate("fleetApp.map.jumpTo({center: [10.0, 53.55], zoom: 9})")
            await page.evaluate(PROBE)
            await asyncio.sleep(args.seconds)
            lines.append(summary("no vehicles, idle map", await page.evaluate(TAKE),
                                 args.seconds))
            # the baseline that matters: the same map redrawn every frame (SwiftShader renders
            # on the CPU, so a full redraw is what a frame costs here)
            await page.evaluate(PAN)
            await asyncio.sleep(args.seconds)
            lines.append(summary("no vehicles, panning (baseline)", await page.evaluate(TAKE),
                                 args.seconds))
            await page.evaluate("window.benchPan = false")
            await page.evaluate("fleetApp.map.jumpTo({center: [10.0, 53.55], zoom: 9})")
            feeder = asyncio.get_running_loop().create_task(feed(backend, args.vehicles, stop,
                                                                 sent))
            await asyncio.sleep(5)  # warm-up: every vehicle known, clusters built
            await page.evaluate(TAKE)
            await asyncio.sleep(args.seconds)
            s = await page.evaluate(TAKE)
            lines.append(summary("zoom 9, clustered", s, args.seconds))
            updates0 = s["updates"]
            await page.evaluate("fleetApp.map.jumpTo({center: [10.0, 53.55], zoom: 14})")
            await asyncio.sleep(3)
            await page.evaluate(TAKE)
            await asyncio.sleep(args.seconds)
            s = await page.evaluate(TAKE)
            lines.append(summary("zoom 14, single vehicles", s, args.seconds))
            lines.append(f"{'':<34} source updates {s['updates'] - updates0} in "
                         f"{args.seconds + 3:.0f} s, last rebuild {s['build_ms']:.1f} ms for "
                         f"{s['vehicles']} vehicles")
            rendered = await page.evaluate(
                "fleetApp.map.queryRenderedFeatures({layers: ['vehicle-arrow']}).length")
            lines.append(f"{'':<34} {rendered} vehicles drawn in view")
            if args.clients:
                lat: list[float] = []
                clients = [asyncio.get_running_loop().create_task(
                    ws_client(base.replace("http", "ws") + "/ws", token, lat, stop))
                    for _ in range(args.clients)]
                await asyncio.sleep(3)
                lat.clear()
                await page.evaluate(TAKE)
                await asyncio.sleep(args.seconds)
                s = await page.evaluate(TAKE)
                lines.append(summary(f"zoom 14 + {args.clients} WebSocket clients", s,
                                     args.seconds))
                expected = args.vehicles * args.seconds * args.clients
                lines.append(f"{'':<34} {args.clients} clients: {len(lat)} positions received "
                             f"of {expected:.0f} sent to them "
                             f"({100 * len(lat) / expected:.0f} %), latency p50 "
                             f"{pct(lat, 50):.0f} p99 {pct(lat, 99):.0f} ms")
                for c in clients:
                    c.cancel()
            stop.set()
            await feeder
            hub = backend.status().get("hub", {})
            lines.append(f"{'':<34} hub: {json.dumps(hub)}; fed {sent[0]} positions")
            await browser.close()
        await backend.stop()
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=15.0)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
