"""Link benchmark: geostream/QUIC vs MQTT 3.1.1 over TLS (paho-mqtt → mosquitto), same run.

    python bench/bench_link.py [--rtt-ms 50] [--handovers 15] [--readings 100] [--backlog 36000]

Everything runs on loopback through emulated links with the same round-trip time: our UDP
relay (hil/linkemu.py) for QUIC and a small TCP relay with the same one-way delay for MQTT.
Measures, and prints as ratios QUIC / MQTT:

1. handover gap: last acknowledgement on the old path → first acknowledgement on the new path,
   readings at 10 Hz; each handover happens right after an acknowledgement, and one reading is
   sent at once after it (so the reading interval does not blur the figure). QUIC: the agent
   migrates its connection to a new local address (new socket, new connection ID). MQTT: the
   relay drops the TCP connection and the client reconnects *at once* (generous to MQTT: a
   real client must first notice the dead path).
   MQTT's acknowledgement is the QoS 1 PUBACK (broker received); ours is the gateway's ack after
   its database commit.
2. bytes on the wire per reading (UDP resp. TCP payload both ways, headers excluded), steady 10 Hz
   stream, one reading per message/batch as a live tracker sends them.
3. drain time of a backlog of N readings over the emulated link.
Bounded: every wait has a timeout; mosquitto and all sockets are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agent.config import AgentConfig, JournalConfig, ServerConfig
from agent.journal_worker import JournalWorker
from agent.readings import Position
from agent.uplink import Uplink
from backend.gateway import Gateway
from backend.hub import Hub
from backend.pki import generate
from backend.store import open_store
from backend.writer import BatchWriter
from hil.linkemu import LinkEmulator, LinkModel

T0_MS = 1_700_000_000_000


def free_port(kind=None) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind or socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def position(i: int) -> Position:
    """A realistic fix: full-precision coordinates, noisy speed/course/altitude, quality."""
    rnd = random.Random(i)
    return Position(ts_ms=T0_MS + 100 * i,
                    lat=round(52.370216 + i * 1.3e-6 + rnd.gauss(0, 2e-7), 7),
                    lon=round(4.895168 + i * 0.9e-6 + rnd.gauss(0, 2e-7), 7),
                    alt_m=round(3.2 + rnd.gauss(0, 0.4), 1),
                    speed_kmh=round(48.6 + rnd.gauss(0, 1.5), 2),
                    course_deg=round(87.5 + rnd.gauss(0, 2), 1), fix=1, mode=3,
                    sats=rnd.choice((10, 11, 12)), hdop=round(rnd.uniform(0.7, 1.2), 1),
                    clock_offset_ms=rnd.randint(5, 30))


def position_json(vehicle: str, i: int) -> bytes:
    p = position(i)
    return json.dumps({"vehicle": vehicle, "seq": i, "ts": p.ts_ms, "lat": p.lat, "lon": p.lon,
                       "alt": p.alt_m, "speed_kmh": p.speed_kmh, "course": p.course_deg,
                       "fix": p.fix, "mode": p.mode, "sats": p.sats, "hdop": p.hdop,
                       "clk": p.clock_offset_ms}, separators=(",", ":")).encode()


async def until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.005)


# --- QUIC side ----------------------------------------------------------------------------


class QuicSide:
    def __init__(self, tmp: Path, pki: dict, rtt_s: float):
        self.tmp, self.pki, self.rtt_s = tmp, pki, rtt_s

    async def __aenter__(self) -> QuicSide:
        self.store = open_store(f"sqlite://{self.tmp / 'gw.db'}")
        await self.store.open()
        self.writer = BatchWriter(self.store)
        self.writer.start()
        self.gateway = Gateway(self.store, self.writer, Hub())
        self.port = free_port(2)
        await self.gateway.start("127.0.0.1", self.port, self.pki["cert"], self.pki["key"])
        return self

    async def __aexit__(self, *exc) -> None:
        await self.gateway.stop()
        await self.writer.stop()
        await self.store.close()

    async def agent(self, name: str):
        token = await self.store.add_vehicle(name)
        emu = await LinkEmulator(("127.0.0.1", self.port),
                                 LinkModel(delay_s=self.rtt_s / 2)).start()
        cfg = AgentConfig(vehicle_id=name, token=token,
                          server=ServerConfig(host=emu.address[0], port=emu.address[1],
                                              ca_file=self.pki["ca"], server_name="localhost"),
                          journal=JournalConfig(path=str(self.tmp / name / "journal.sqlite")))
        journal = JournalWorker(cfg.journal.path)
        uplink = Uplink(cfg, journal, route_check_s=None)
        return emu, journal, uplink


# The agent daemon group-commits its journal every 200 ms (JournalConfig.commit_interval_ms) and
# the uplink sends after each commit: at 10 Hz that is two readings per batch.
COMMIT_S = 0.2


async def quic_stream(journal, uplink, start: int, n: int, hz: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    t = loop.time()
    per_commit = max(1, round(hz * COMMIT_S))
    for k, i in enumerate(range(0, n, per_commit)):
        await asyncio.sleep(max(0.0, t + k * COMMIT_S - loop.time()))
        group = [position(start + j) for j in range(i, min(n, i + per_commit))]
        await journal.call("append", group)
        uplink.notify()


async def quic_handover_and_bytes(side: QuicSide, handovers: int, readings: int) -> dict:
    emu, journal, uplink = await side.agent("bench-live")
    acks: list[float] = []
    uplink.on_ack = lambda ev: acks.append(time.monotonic())
    task = asyncio.get_running_loop().create_task(uplink.run())
    try:
        await until(lambda: uplink.stats.state == "connected", 15, "quic connect")
        # bytes per reading, steady stream
        await quic_stream(journal, uplink, 1, 10)
        await until(lambda: uplink.stats.readings_acked >= 10, 10, "warm-up acked")
        s = emu.model.stats
        b0 = s.bytes_up + s.bytes_down
        d0 = s.datagrams_up + s.datagrams_down
        await quic_stream(journal, uplink, 11, readings)
        await until(lambda: uplink.stats.readings_acked >= 10 + readings, 10, "stream acked")
        await asyncio.sleep(0.5)  # trailing ACK frames of the last batch
        wire = s.bytes_up + s.bytes_down - b0
        datagrams = s.datagrams_up + s.datagrams_down - d0
        # handovers during a 10 Hz stream, each right after an ack with a reading sent at once
        gaps = []
        streamer = asyncio.get_running_loop().create_task(
            quic_stream(journal, uplink, 11 + readings, int(handovers * 1.2 * 10) + 20))
        extra = 100_000
        for i in range(handovers):
            await asyncio.sleep(1.0)
            n = len(acks)
            await until(lambda n=n: len(acks) > n, 5, "an ack on the old path")
            last_old = acks[-1]
            await uplink.migrate(f"127.0.0.{2 + i % 200}")
            extra += 1
            await journal.call("append", [position(extra)])
            uplink.notify()
            await until(lambda t=last_old: acks[-1] > t, 10, "ack on new path")
            gaps.append(next(a for a in acks if a > last_old) - last_old)
        await streamer
        link = uplink.link
        assert link is not None and link.handshakes == 1, "handovers must keep the connection"
        return {"bytes_per_reading": wire / readings, "datagrams_per_reading": datagrams / readings,
                "gaps": gaps}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        journal.close()
        emu.close()


async def quic_backlog(side: QuicSide, n: int) -> dict:
    emu, journal, uplink = await side.agent("bench-backlog")
    chunk = 2000
    for start in range(1, n + 1, chunk):
        await journal.call("append", [position(i) for i in range(start, min(n + 1, start + chunk))])
    t0 = time.monotonic()
    task = asyncio.get_running_loop().create_task(uplink.run())
    try:
        await until(lambda: uplink.stats.readings_acked >= n, 180, "backlog drained")
        return {"drain_s": time.monotonic() - t0, "readings": n,
                "bytes_per_reading": (emu.model.stats.bytes_up + emu.model.stats.bytes_down) / n}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        journal.close()
        emu.close()


# --- MQTT side ----------------------------------------------------------------------------


class TcpDelayRelay:
    """TCP relay adding a one-way delay per direction (order kept), counting payload bytes."""

    def __init__(self, target_port: int, delay_s: float):
        self.target_port, self.delay_s = target_port, delay_s
        self.bytes = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TcpDelayRelay:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # the kernel accepted locally at once; a real SYN / SYN-ACK costs one round trip
        # before the client can send its first byte
        await asyncio.sleep(2 * self.delay_s)
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        self._writers |= {w, uw}
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w), return_exceptions=True)
        for x in (w, uw):
            x.close()
            self._writers.discard(x)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        last = 0.0
        while data := await r.read(65536):
            self.bytes += len(data)
            at = max(self.loop.time() + self.delay_s, last)
            last = at
            self.loop.call_at(at, lambda d=data: None if w.is_closing() else w.write(d))
        w.close()

    def drop_all(self) -> None:
        """The old path is gone: every relayed connection is cut."""
        def cut():
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()
        self.loop.call_soon_threadsafe(cut)

    def stop(self) -> None:
        async def shutdown():
            for w in list(self._writers):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _readable_by_broker(tmp: Path, pki: dict) -> None:
    """Run as root, mosquitto drops to its own user: let that user read the temp files."""
    import os
    import pwd

    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in (tmp, Path(pki["ca"]).parent, *(Path(pki[k]) for k in ("ca", "cert", "key"))):
        os.chown(path, user.pw_uid, user.pw_gid)


def mosquitto(tmp: Path, pki: dict) -> tuple[subprocess.Popen, int]:
    _readable_by_broker(tmp, pki)
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['cert']}\n"
                    f"keyfile {pki['key']}\nallow_anonymous true\npersistence false\n"
                    "log_type error\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mosquitto did not start: {proc.stderr.read().decode()}")


def mqtt_run(pki: dict, relay: TcpDelayRelay, handovers: int, readings: int) -> dict:
    import paho.mqtt.client as mqtt

    acks: list[float] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-live",
                         protocol=mqtt.MQTTv311, clean_session=False)
    client.tls_set(ca_certs=pki["ca"])
    client.on_publish = lambda c, u, mid, rc, props: acks.append(time.monotonic())
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", relay.port, keepalive=60)
    topic = "fleet/bench-live/pos"

    def pump(until_t: float) -> None:
        while time.monotonic() < until_t:
            client.loop(timeout=0.002)

    def stream(start: int, n: int, during=None) -> None:
        t = time.monotonic()
        for i in range(n):
            pump(t + i / 10)
            client.publish(topic, position_json("bench-live", start + i), qos=1)
            if during:
                during(i)

    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(timeout=0.01)
    stream(1, 10)
    pump(time.monotonic() + 1)
    b0 = relay.bytes
    n0 = len(acks)
    stream(11, readings)
    pump(time.monotonic() + 1)
    assert len(acks) - n0 >= readings, "every publish acknowledged"
    wire = relay.bytes - b0

    gaps = []
    for i in range(handovers):
        stream(1000 + i * 10, 10)
        n = len(acks)
        t_end = time.monotonic() + 5
        while len(acks) == n and time.monotonic() < t_end:
            client.loop(timeout=0.001)
        last_old = acks[-1]
        relay.drop_all()
        client.reconnect()  # at once: a real client would first have to notice the dead path
        client.publish(topic, position_json("bench-live", 5000 + i), qos=1)
        t_end = time.monotonic() + 10
        while acks[-1] <= last_old and time.monotonic() < t_end:
            client.loop(timeout=0.001)
        gaps.append(next(a for a in acks if a > last_old) - last_old)
    client.disconnect()
    return {"bytes_per_reading": wire / readings, "gaps": gaps}


# --- main ---------------------------------------------------------------------------------


async def quic_all(tmp: Path, pki: dict, args) -> dict:
    async with QuicSide(tmp, pki, args.rtt_ms / 1000) as side:
        live = await quic_handover_and_bytes(side, args.handovers, args.readings)
        backlog = await quic_backlog(side, args.backlog)
    return {**live, **backlog, "bytes_per_reading_backlog": backlog["bytes_per_reading"],
            "bytes_per_reading": live["bytes_per_reading"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rtt-ms", type=float, default=50.0)
    p.add_argument("--handovers", type=int, default=15)
    p.add_argument("--readings", type=int, default=100, help="readings for the bytes figure")
    p.add_argument("--backlog", type=int, default=36000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-link-") as d:
        tmp = Path(d)
        pki = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
        quic = asyncio.run(quic_all(tmp, pki, args))
        broker, port = mosquitto(tmp, pki)
        relay = TcpDelayRelay(port, args.rtt_ms / 2000).start()
        try:
            mqtt = mqtt_run(pki, relay, args.handovers, args.readings)
        finally:
            relay.stop()
            broker.terminate()
            broker.wait(5)
    qg, mg = statistics.median(quic["gaps"]), statistics.median(mqtt["gaps"])
    print(f"link benchmark, emulated RTT {args.rtt_ms:.0f} ms, 10 Hz positions")
    print(f"handover gap (median of {args.handovers}): QUIC migration {qg * 1000:.0f} ms "
          f"(max {max(quic['gaps']) * 1000:.0f}), MQTT/TLS reconnect {mg * 1000:.0f} ms "
          f"(max {max(mqtt['gaps']) * 1000:.0f}) -> ratio {qg / mg:.2f} (goal <= 0.3)")
    qb, mb = quic["bytes_per_reading"], mqtt["bytes_per_reading"]
    print(f"bytes per reading, live 10 Hz (agent: a batch per 200 ms journal commit; MQTT: a "
          f"publish per reading): geostream/QUIC {qb:.0f} "
          f"({quic['datagrams_per_reading']:.1f} datagrams), MQTT 3.1.1+JSON/TLS {mb:.0f} "
          f"-> ratio {qb / mb:.2f} (goal <= 0.25)")
    qbb = quic["bytes_per_reading_backlog"]
    print(f"bytes per reading, backlog drain (batched): geostream/QUIC {qbb:.0f} "
          f"-> ratio {qbb / mb:.2f} vs live MQTT")
    print(f"backlog of {quic['readings']} readings drained in {quic['drain_s']:.1f} s "
          f"({quic['readings'] / quic['drain_s']:.0f} readings/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
