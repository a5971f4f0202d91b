"""The browser's cost of a 10,000-vehicle fleet at 1 Hz: where a second of the page's time goes.

    .venv/bin/python bench/bench_browser.py [--vehicles 10000] [--seconds 6] [--zooms 9,14]
        [--profile]
    (also `bench/bench_webapp.py browser`)

Debian chromium at 1366x768, WebGL on SwiftShader (as the tests run it), the real backend app
fed through `Hub.position` (bench_webapp's feed). Per phase:
- Chrome's trace (category `toplevel`): busy time per second of the page's main thread, of
  MapLibre's workers (geojson-vt/supercluster re-tiling, tile parsing) and of the GPU process
  (SwiftShader drawing on the CPU), each the union of its top-level tasks;
- in the page: requestAnimationFrame intervals, long tasks (> 50 ms, PerformanceObserver) and
  the app's own work, timed around each part: in the socket's worker, inflating and parsing
  the hub's frames; on the main thread, unpacking them into the fleet (coalescing), `fleet.apply`,
  building the live source's features, the clustered source's diff and its `updateData` call
  (MapLibre's serialisation for its worker runs later: in the long tasks and `--profile`),
  the list.
Baselines in the same run: the map without vehicles (idle; panned every frame, a full redraw
each frame) and, per zoom, the same map holding the 10,000 vehicles with updates stopped and
the live layer frozen (idle; panned every frame).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_webapp import (  # noqa: E402
    CENTER,
    CHROMIUM_ARGS,
    PASSWORD,
    STEP_TIMEOUT_S,
    Fleet,
    feed,
    fleet_app,
    pct,
    serve,
)

TRACE_CATEGORIES = ["toplevel", "__metadata"]  # top-level tasks only: a small trace
SETTLE_S = 3.0  # after the feed stops: the last glides end, the worker finishes
PROFILE_TOP = 25  # functions listed per profiled phase

# in the page: frame intervals, long tasks and the app's parts, timed by wrapping them
PROBE = """() => {
  const app = window.fleetApp;
  const p = { frames: [], received: 0, longs: [], parts: {}, longest: 0 };
  const time = (obj, name, key) => {
    if (!obj[name]) return;
    const f = obj[name].bind(obj);
    obj[name] = (...a) => {
      const t = performance.now();
      try { return f(...a); } finally {
        const d = performance.now() - t;
        p.parts[key] = (p.parts[key] ?? 0) + d;
        if (d > p.longest) { p.longest = d; p.longestBy = key; }
      }
    };
  };
  // the socket's worker parses the hub's frames; the page only unpacks them (live.js)
  time(app.socket, "onWorker", "ws");
  if (app.socket.onFeature) { // the app before its socket worker (before/after runs)
    app.socket.received = 0; app.socket.workerMs = 0;
    const onFeature = app.socket.onFeature, ws = app.socket.ws, onmessage = ws.onmessage;
    app.socket.onFeature = (f) => { app.socket.received++; onFeature(f); };
    ws.onmessage = (e) => { const t = performance.now(); onmessage(e);
                            const d = performance.now() - t;
                            if (d > p.longest) { p.longest = d; p.longestBy = "ws"; }
                            p.parts.ws = (p.parts.ws ?? 0) + d; };
  }
  p.received0 = app.socket.received; p.worker0 = app.socket.workerMs;
  time(app.fleet, "apply", "apply");
  time(app.live, "collection", "features");
  time(app.list, "redraw", "list");
  time(app.live, "updateClusters", "clusters");
  const frame = app.live.frame.bind(app.live);
  app.live.frame = (now) => { if (window.benchFrozen) return;
                              const t = performance.now(); frame(now);
                              const d = performance.now() - t;
                              if (d > p.longest) { p.longest = d; p.longestBy = "frame"; }
                              p.parts.frame = (p.parts.frame ?? 0) + d; };
  new PerformanceObserver((l) => { for (const e of l.getEntries()) p.longs.push(e.duration); })
    .observe({ type: "longtask" });
  let last = performance.now();
  const tick = (t) => { p.frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.benchProbe = p;
}"""
PAN = """(on) => {
  window.benchPan = on;
  const step = () => { if (!window.benchPan) return; fleetApp.map.panBy([2, 0], { duration: 0 });
                       requestAnimationFrame(step); };
  if (on) requestAnimationFrame(step);
}"""
TAKE = """() => {
  const p = window.benchProbe, sock = fleetApp.socket;
  const out = { frames: p.frames, received: sock.received - p.received0, longs: p.longs,
                longest: p.longest, longestBy: p.longestBy ?? "",
                parts: { ...p.parts, parse: sock.workerMs - p.worker0 },
                vehicles: fleetApp.fleet.vehicles.size, updates: fleetApp.live.frames };
  p.frames = []; p.longs = []; p.parts = {}; p.longest = 0; p.longestBy = "";
  p.received0 = sock.received; p.worker0 = sock.workerMs;
  return out;
}"""


def busy_ms(trace: dict) -> dict[str, float]:
    """Milliseconds of top-level tasks per thread kind: the union of each thread's intervals
    (nested or overlapping slices counted once)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names, procs = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[(e["pid"], e["tid"])] = e["args"]["name"]
        if e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = e["args"]["name"]
    spans: dict[tuple, list] = {}
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            spans.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    out = {"main": 0.0, "workers": 0.0, "gpu": 0.0, "compositor": 0.0}
    for key, iv in spans.items():
        thread, proc = names.get(key, ""), procs.get(key[0], "")
        if thread == "CrRendererMain":
            kind = "main"
        elif thread.startswith("DedicatedWorker"):
            kind = "workers"
        elif proc.startswith("GPU") or thread in ("CrGpuMain", "VizCompositorThread"):
            kind = "gpu"
        elif thread == "Compositor":
            kind = "compositor"
        else:
            continue
        iv.sort()
        total, end = 0.0, -1.0
        for a, b in iv:
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
        out[kind] += total / 1000
    return out


def top_functions(profile: dict, n: int = PROFILE_TOP) -> list[str]:
    """The main thread's functions with the most self time in a V8 CPU profile."""
    nodes = {x["id"]: x for x in profile["nodes"]}
    dt: dict[int, float] = {}
    for sid, d in zip(profile["samples"], profile["timeDeltas"], strict=False):
        dt[sid] = dt.get(sid, 0) + d
    by: dict[str, float] = {}
    for sid, us in dt.items():
        cf = nodes[sid]["callFrame"]
        where = f"{cf['url'].rsplit('/', 1)[-1]}:{cf['lineNumber']}"
        key = f"{cf['functionName'] or '(anonymous)'} {where}"
        by[key] = by.get(key, 0) + us
    total = sum(by.values()) or 1
    return [f"    {us / 1000:8.0f} ms {100 * us / total:4.1f} %  {k}"
            for k, us in sorted(by.items(), key=lambda kv: -kv[1])[:n]]


async def measure(browser, page, seconds: float, feeding=None, cdp=None) -> dict:
    """One phase: trace (or profile), wait (or feed) `seconds`, collect page and trace figures."""
    await asyncio.wait_for(page.evaluate(TAKE), STEP_TIMEOUT_S)
    if cdp:
        await cdp.send("Profiler.enable")
        await cdp.send("Profiler.start")
    else:
        await browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
    if feeding:
        await feeding(seconds)
    else:
        await asyncio.sleep(seconds)
    s = await asyncio.wait_for(page.evaluate(TAKE), STEP_TIMEOUT_S)
    if cdp:
        s["profile"] = top_functions((await cdp.send("Profiler.stop"))["profile"])
        s["busy"] = {"main": 0.0, "workers": 0.0, "gpu": 0.0}
    else:
        s["busy"] = busy_ms(json.loads(await browser.stop_tracing()))
    return s


def summary(name: str, s: dict, seconds: float) -> str:
    f = s["frames"][3:]  # the first frames after a phase change are not steady
    busy = {k: v / seconds for k, v in s["busy"].items()}
    parts = s["parts"]
    ours = " + ".join(f"{parts.get(k, 0) / seconds:.0f}" for k in
                      ("parse", "ws", "apply", "features", "clusters", "list"))
    longs = s["longs"]
    return (f"| {name} | {len(f) / seconds:.1f} | {pct(f, 50):.0f} / {pct(f, 95):.0f} / "
            f"{max(f, default=0):.0f} | {busy['main']:.0f} / {busy['workers']:.0f} / "
            f"{busy['gpu']:.0f} | {len(longs)} ({sum(longs) / seconds:.0f} ms/s, max "
            f"{max(longs, default=0):.0f}) | {ours} | {s['longest']:.1f} ({s['longestBy']}) | "
            f"{s['received']:,} |")


HEADER = ["| phase | fps | frame p50 / p95 / max ms | busy ms/s: main / workers / GPU proc | "
          "long tasks > 50 ms (ms/s, max) | ours ms/s: (socket worker: inflate + parse) + "
          "main: unpack + apply + live features + cluster diff + list | ours on the main "
          "thread: longest call ms | positions |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]


async def run(vehicles: int, seconds: float, zooms: list[int], profile: bool) -> list[str]:
    from playwright.async_api import async_playwright

    async def step(coro):
        return await asyncio.wait_for(coro, STEP_TIMEOUT_S)

    center = f"[{CENTER[1]}, {CENTER[0]}]"
    with tempfile.TemporaryDirectory() as d:
        store, hub, app, _token = await fleet_app(Path(d))
        runner, addr = await serve(app)
        fleet = Fleet(vehicles)
        profiles: list[str] = []
        lines = [f"chromium 1366x768 SwiftShader, {vehicles:,} vehicles at 1 Hz, "
                 f"{seconds:g} s per phase", "", *HEADER]
        try:
            async with async_playwright() as p:
                b = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                page = await b.new_page(bypass_csp=True, viewport={"width": 1366, "height": 768})
                errors: list[str] = []
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.on("pageerror", lambda e: errors.append(str(e)))
                await step(page.goto(f"http://{addr}/login"))
                await page.fill("#username", "bench")
                await page.fill("#password", PASSWORD)
                await page.click("button[type=submit]")
                await step(page.wait_for_function("document.body.dataset.ready === 'true'",
                                                  timeout=60000))
                await step(page.evaluate(f"fleetApp.map.jumpTo({{center: {center}, zoom: 9}})"))
                await step(page.evaluate(PROBE))

                cdp = await page.context.new_cdp_session(page) if profile else None

                async def phase(name, pan=False, feeding=None):
                    await step(page.evaluate(PAN, pan))
                    s = await measure(b, page, seconds, feeding, cdp if feeding else None)
                    await step(page.evaluate(PAN, False))
                    lines.append(summary(name, s, seconds))
                    if "profile" in s:
                        profiles.extend([f"main thread, {name}:", *s["profile"]])

                await phase("no vehicles, idle")
                await phase("no vehicles, panned every frame", pan=True)

                async def live(t):
                    await feed(fleet, hub.position, t)

                jump = f"fleetApp.map.jumpTo({{center: {center}, zoom: %d}})"
                for zoom in zooms:
                    await step(page.evaluate("window.benchFrozen = false"))
                    await feed(fleet, hub.position, 3)  # warm-up: every vehicle known
                    # (the app fits the view to the fleet once, at its first positions)
                    await step(page.evaluate(jump % zoom))
                    await feed(fleet, hub.position, 1)
                    assert await step(page.evaluate("fleetApp.map.getZoom()")) == zoom
                    await phase(f"{vehicles:,}, zoom {zoom}, updating at 1 Hz", feeding=live)
                    await phase(f"{vehicles:,}, zoom {zoom}, updating, panned", pan=True,
                                feeding=live)
                    await asyncio.sleep(SETTLE_S)
                    await step(page.evaluate("window.benchFrozen = true"))
                    await phase(f"{vehicles:,}, zoom {zoom}, static (baseline), idle")
                    await phase(f"{vehicles:,}, zoom {zoom}, static (baseline), panned",
                                pan=True)
                    await step(page.evaluate("window.benchFrozen = false"))
                counts = await step(page.evaluate("JSON.stringify(fleetApp.fleet.counts("
                                                  "Date.now()))"))
                lines += ["", f"vehicles by state at the end: {counts}; source updates: "
                          f"{await step(page.evaluate('fleetApp.live.frames'))}; "
                          f"console errors: {len(errors)} {errors[:3]}", *profiles]
                await b.close()
        finally:
            await runner.cleanup()
            await store.close()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--zooms", default="9,14")
    ap.add_argument("--profile", action="store_true",
                    help="V8 CPU profile of the main thread in the updating phases (no trace)")
    a = ap.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    cores = subprocess.run(["nproc"], text=True, capture_output=True).stdout.strip()
    print(f"load average before: {' '.join(load)} ({cores} cores)")
    print("\n".join(asyncio.run(run(a.vehicles, a.seconds,
                                    [int(z) for z in a.zooms.split(",")], a.profile))))
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
