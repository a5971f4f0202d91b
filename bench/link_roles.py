"""The processes of bench/bench_link.py, one per role, each in its own network namespace when the
bench runs in namespaces (otherwise all on loopback):

    backend   gateway (SQLite store) and mosquitto            backend namespace
    relay     UDP relay (hil.linkemu) and TCP relay            router namespace
              (hil.tcplink), both with the same delay, plus
              a control socket for statistics and rebinds
    quic      the agent's journal + uplink                     vehicle namespace
    mqtt      a paho-mqtt client                               vehicle namespace

    python -m bench.link_roles ROLE      (settings: one JSON object on stdin)

Services (backend, relay) print one JSON line `{"ready": …}` and run until their stdin closes;
clients (quic, mqtt) print one JSON line `{"result": …}` and exit. Acknowledgement times are taken
with time.monotonic() inside the client process, so no clocks are compared across processes.
Every wait is bounded in time, every load loop in count.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from agent.readings import Position

T0_MS = 1_700_000_000_000
# The agent daemon group-commits its journal every 200 ms (JournalConfig.commit_interval_ms);
# unpaced, the uplink sends after each commit: at 10 Hz that is two readings per batch.
COMMIT_S = 0.2
# the agent's default live pacing, `[server] send_interval_ms`
DEFAULT_SEND_INTERVAL_MS = 1000
HZ = 10.0
# MQTT keepalive as a vehicle client would set it: often enough to keep NAT mappings alive
MQTT_KEEPALIVE_S = 15
TOPIC = "fleet/bench-live/pos"
# pause between handovers, so each starts from a quiet, steady stream
HANDOVER_EVERY_S = 1.0
ACK_TIMEOUT_S = 15.0  # longest wait for one acknowledgement after a handover


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


def emit(**obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def free_port(host: str, kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def stdin_closed() -> None:
    """Services run until the bench closes their stdin (or dies)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def rig_from(cfg: dict):
    """The namespace rig the bench built, to move the vehicle between uplinks; None on loopback."""
    if not cfg.get("rig"):
        return None
    from hil.netns import NetnsRig

    return NetnsRig(cfg["rig"]["name"], prefix=cfg["rig"]["prefix"])


# --- control channel to the relay (a Unix socket: reachable from every namespace) -----------


class Control:
    def __init__(self, path: str):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(10)
        self._sock.connect(path)
        self._file = self._sock.makefile("rwb")
        self._lock = threading.Lock()

    def call(self, op: str, **kw) -> dict:
        with self._lock:
            self._file.write(json.dumps({"op": op, **kw}).encode() + b"\n")
            self._file.flush()
            reply = json.loads(self._file.readline())
        if "error" in reply:
            raise RuntimeError(f"relay: {reply['error']}")
        return reply

    def wire(self, proto: str) -> tuple[int, int]:
        """(payload bytes both ways, datagrams or segments-delivered both ways) so far."""
        s = self.call("stats")[proto]
        return s["bytes_up"] + s["bytes_down"], s["datagrams_up"] + s["datagrams_down"]

    def close(self) -> None:
        self._file.close()
        self._sock.close()


# --- backend: gateway + mosquitto -------------------------------------------------------------


def _readable_by_broker(paths: list[Path]) -> None:
    """Run as root, mosquitto drops to its own user: let that user read the temp files."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


def start_mosquitto(tmp: Path, pki: dict, host: str) -> tuple[subprocess.Popen, int]:
    port = free_port(host, socket.SOCK_STREAM)
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} {host}\ncafile {pki['ca']}\ncertfile {pki['cert']}\n"
                    f"keyfile {pki['key']}\nallow_anonymous true\npersistence false\n"
                    "log_type error\n")
    _readable_by_broker([tmp, Path(pki["ca"]).parent, conf,
                         *(Path(pki[k]) for k in ("ca", "cert", "key"))])
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mosquitto did not start: {proc.stderr.read().decode()}")


async def backend(cfg: dict) -> None:
    from backend.gateway import Gateway
    from backend.hub import Hub
    from backend.store import open_store
    from backend.writer import BatchWriter

    tmp, pki, host = Path(cfg["tmp"]), cfg["pki"], cfg["host"]
    store = open_store(f"sqlite://{tmp / 'gw.db'}")
    await store.open()
    writer = BatchWriter(store)
    writer.start()
    gateway = Gateway(store, writer, Hub())
    broker = None
    try:
        quic_port = free_port(host, socket.SOCK_DGRAM)
        await gateway.start(host, quic_port, pki["cert"], pki["key"])
        tokens = {v: await store.add_vehicle(v) for v in cfg["vehicles"]}
        broker, mqtt_port = start_mosquitto(tmp, pki, host)
        emit(ready=True, quic_port=quic_port, mqtt_port=mqtt_port, tokens=tokens,
             mosquitto_pid=broker.pid)
        await stdin_closed()
    finally:
        if broker is not None:
            broker.terminate()
            try:
                broker.wait(5)
            except subprocess.TimeoutExpired:
                broker.kill()
        await gateway.stop()
        await writer.stop()
        await store.close()


# --- relay: the emulated link -----------------------------------------------------------------


async def relay(cfg: dict) -> None:
    from hil.linkemu import LinkEmulator, LinkModel
    from hil.tcplink import TcpLinkEmulator, TcpLinkModel

    delay = cfg["rtt_s"] / 2
    listen = (cfg["host"], 0)
    udp = await LinkEmulator((cfg["target"], cfg["quic_port"]), LinkModel(delay_s=delay),
                             listen).start()
    tcp = await TcpLinkEmulator((cfg["target"], cfg["mqtt_port"]), TcpLinkModel(delay_s=delay),
                                listen).start()

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while line := await r.readline():
            req = json.loads(line)
            op, proto = req.get("op"), req.get("proto")
            if op == "stats":
                reply = {"udp": asdict(udp.model.stats), "tcp": asdict(tcp.model.stats)}
            elif op == "rebind" and proto == "udp":
                await udp.rebind()
                reply = {"ok": True}
            elif op == "rebind" and proto == "tcp":
                tcp.rebind()
                reply = {"ok": True}
            elif op == "cut" and proto == "tcp":
                tcp.cut()
                reply = {"ok": True}
            else:
                reply = {"error": f"unknown request {req}"}
            w.write(json.dumps(reply).encode() + b"\n")
            await w.drain()
        w.close()

    control = await asyncio.start_unix_server(serve, path=cfg["control"])
    try:
        emit(ready=True, udp_port=udp.address[1], tcp_port=tcp.address[1])
        await stdin_closed()
    finally:
        control.close()
        udp.close()
        await tcp.close()


# --- quic: the agent ----------------------------------------------------------------------------


async def until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.001)


class Agent:
    """Journal + uplink of one vehicle, with the acknowledgement times the uplink reports."""

    def __init__(self, cfg: dict, name: str, route_watch: bool,
                 send_interval_ms: int = DEFAULT_SEND_INTERVAL_MS):
        from agent.config import AgentConfig, JournalConfig, ServerConfig
        from agent.journal_worker import JournalWorker
        from agent.uplink import ROUTE_CHECK_S, Uplink

        path = Path(cfg["tmp"]) / "vehicle" / name / "journal.sqlite"
        config = AgentConfig(vehicle_id=name, token=cfg["tokens"][name],
                             server=ServerConfig(host=cfg["relay_host"], port=cfg["udp_port"],
                                                 ca_file=cfg["pki"]["ca"], server_name="localhost",
                                                 send_interval_ms=send_interval_ms),
                             journal=JournalConfig(path=str(path)))
        self.journal = JournalWorker(config.journal.path)
        # on loopback the bench migrates explicitly (the route to 127.0.0.1 never changes)
        self.uplink = Uplink(config, self.journal, route_check_s=ROUTE_CHECK_S if route_watch
                             else None)
        self.acks: list[float] = []
        self.uplink.on_ack = lambda ev: self.acks.append(time.monotonic())
        self.next_seq = 1
        self.task: asyncio.Task | None = None

    def start(self) -> Agent:
        self.task = asyncio.get_running_loop().create_task(self.uplink.run())
        return self

    async def append(self, n: int) -> None:
        group = [position(i) for i in range(self.next_seq, self.next_seq + n)]
        self.next_seq += n
        await self.journal.append(group)
        self.uplink.notify()

    async def stream(self, n: int, stop: asyncio.Event | None = None) -> None:
        """n readings at 10 Hz, committed and sent in groups every 200 ms like the daemon."""
        loop = asyncio.get_running_loop()
        t = loop.time()
        per_commit = max(1, round(HZ * COMMIT_S))
        for k, i in enumerate(range(0, n, per_commit)):
            await asyncio.sleep(max(0.0, t + k * COMMIT_S - loop.time()))
            if stop is not None and stop.is_set():
                return
            await self.append(min(per_commit, n - i))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.journal.close()


async def quic_handovers(agent: Agent, count: int, change, prepare=None
                         ) -> tuple[list[float], dict]:
    """Handovers during the 10 Hz stream: right after an acknowledgement, change(i) happens, one
    reading is committed and sent at once (so the reading interval does not blur the figure),
    and the gap to the next acknowledgement is taken. Also returns where the time went."""
    gaps, parts = [], {"change": [], "commit": [], "to_ack": []}
    for i in range(count):
        await asyncio.sleep(HANDOVER_EVERY_S)
        if prepare is not None:
            await prepare(i)
        n = len(agent.acks)
        await until(lambda n=n: len(agent.acks) > n, 5, "an ack before the handover")
        last_old = agent.acks[-1]
        await change(i)
        changed = time.monotonic()
        await agent.append(1)
        committed = time.monotonic()
        await until(lambda t=last_old: agent.acks[-1] > t, ACK_TIMEOUT_S, "ack after handover")
        first_new = next(a for a in agent.acks if a > last_old)
        gaps.append(first_new - last_old)
        parts["change"].append(changed - last_old)
        parts["commit"].append(committed - changed)
        parts["to_ack"].append(first_new - committed)
    return gaps, {k: statistics.median(v) for k, v in parts.items()}


async def live_bytes(agent: Agent, ctrl: Control, readings: int) -> tuple[float, float]:
    """UDP payload bytes and datagrams per reading of a 10 Hz stream, both directions."""
    await until(lambda: agent.uplink.stats.state == "connected", 15, "quic connect")
    await agent.stream(10)
    await until(lambda: agent.uplink.stats.readings_acked >= 10, 10, "warm-up acked")
    b0, d0 = ctrl.wire("udp")
    await agent.stream(readings)
    await until(lambda: agent.uplink.stats.readings_acked >= 10 + readings, 10, "stream acked")
    await asyncio.sleep(0.5)  # trailing ACK frames of the last batch
    b1, d1 = ctrl.wire("udp")
    return (b1 - b0) / readings, (d1 - d0) / readings


async def quic(cfg: dict) -> dict:
    ctrl = Control(cfg["control"])
    rig = rig_from(cfg)
    if rig is not None:
        await asyncio.to_thread(rig.use_uplink, 1)
    out: dict = {}
    # bytes per reading at the default live pacing (a batch per second)
    paced = Agent(cfg, "bench-paced", route_watch=rig is not None).start()
    try:
        out["bytes_per_reading"], out["datagrams_per_reading"] = await live_bytes(
            paced, ctrl, cfg["readings"])
    finally:
        await paced.stop()
    # unpaced (a batch per 200 ms journal commit), and the handovers: like the MQTT client,
    # this agent sends every reading at once, so the gaps compare the protocols alone
    live = Agent(cfg, "bench-live", route_watch=rig is not None, send_interval_ms=0).start()
    try:
        out["bytes_per_reading_unpaced"], out["datagrams_per_reading_unpaced"] = (
            await live_bytes(live, ctrl, cfg["readings"]))

        stop = asyncio.Event()
        max_readings = int(2 * cfg["handovers"] * (HANDOVER_EVERY_S + 2 * ACK_TIMEOUT_S) * HZ)
        streamer = asyncio.get_running_loop().create_task(live.stream(max_readings, stop))

        out["migrated_before_reading"] = 0

        async def new_uplink_attached(i: int) -> None:  # the modem is up before the move
            if rig is not None:
                await asyncio.to_thread(rig.bring_up, 2 if i % 2 == 0 else 1)

        async def address_change(i: int) -> None:
            if rig is not None:  # the agent's route watch notices and migrates by itself
                new = await asyncio.to_thread(rig.switch_to, 2 if i % 2 == 0 else 1)
                link = live.uplink.link
                # did the route watch migrate before the bench's reading was committed?
                out["migrated_before_reading"] += link is not None and link.local_host == new
            else:  # loopback: no route changes, so the bench tells the agent
                await live.uplink.migrate(f"127.0.0.{2 + i % 200}")

        async def nat_rebinding(i: int) -> None:  # the agent is not told
            await asyncio.to_thread(ctrl.call, "rebind", proto="udp")

        try:
            out["gaps_address"], out["parts_address"] = await quic_handovers(
                live, cfg["handovers"], address_change, new_uplink_attached)
            out["gaps_rebind"], out["parts_rebind"] = await quic_handovers(
                live, cfg["handovers"], nat_rebinding)
        finally:
            stop.set()
            await streamer
        link = live.uplink.link
        assert link is not None, "connection lost"
        out["handshakes"], out["migrations"] = link.handshakes, link.migrations
    finally:
        await live.stop()

    backlog = Agent(cfg, "bench-backlog", route_watch=rig is not None)
    n = cfg["backlog"]
    try:
        for start in range(0, n, 2000):
            await backlog.append(min(2000, n - start))
        b0, _ = ctrl.wire("udp")
        t0 = time.monotonic()
        backlog.start()
        await until(lambda: backlog.uplink.stats.readings_acked >= n, 180, "backlog drained")
        out["drain_s"] = time.monotonic() - t0
        out["readings"] = n
        out["bytes_per_reading_backlog"] = (ctrl.wire("udp")[0] - b0) / n
    finally:
        await backlog.stop()
        ctrl.close()
    return out


# --- mqtt: paho-mqtt ----------------------------------------------------------------------------


class MqttClient:
    """paho-mqtt, MQTT 3.1.1 over TLS, QoS 1 publishes of JSON positions, PUBACK times kept."""

    def __init__(self, cfg: dict, client_id: str):
        import paho.mqtt.client as mqtt

        self.acks: list[float] = []
        self.published = 0
        self.seq = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=False)
        self.c.tls_set(ca_certs=cfg["pki"]["ca"])
        self.c.on_publish = lambda c, u, mid, rc, props: self.acks.append(time.monotonic())
        self.c.max_inflight_messages_set(1000)
        self.host, self.port = cfg["relay_host"], cfg["tcp_port"]

    def publish(self) -> None:
        self.seq += 1
        self.published += 1
        self.c.publish(TOPIC, position_json("bench-live", self.seq), qos=1)

    def all_acked(self) -> bool:
        return len(self.acks) >= self.published


def mqtt_manual(cfg: dict, ctrl: Control, rig) -> dict:
    """One client driven by loop() calls: the bytes figure and the address change, where the
    client is told at once and reconnects at once."""
    m = MqttClient(cfg, "bench-live")
    c = m.c

    def pump(until_t: float, done=lambda: False) -> None:
        while time.monotonic() < until_t and not done():
            c.loop(timeout=0.001)

    def stream(n: int) -> None:
        t = time.monotonic()
        for i in range(n):
            pump(t + i / HZ)
            m.publish()

    c.connect(m.host, m.port, keepalive=MQTT_KEEPALIVE_S)
    pump(time.monotonic() + 10, c.is_connected)
    if not c.is_connected():
        raise TimeoutError("mqtt connect")
    stream(10)
    pump(time.monotonic() + 5, m.all_acked)
    b0, _ = ctrl.wire("tcp")
    stream(cfg["readings"])
    pump(time.monotonic() + 5, m.all_acked)
    pump(time.monotonic() + 0.5)
    if not m.all_acked():
        raise TimeoutError("mqtt stream acked")
    out = {"bytes_per_reading": (ctrl.wire("tcp")[0] - b0) / cfg["readings"]}

    gaps, parts = [], {"change": [], "tcp_tls": [], "to_ack": []}
    for i in range(cfg["handovers"]):
        if rig is not None:
            rig.bring_up(2 if i % 2 == 0 else 1)  # the modem is up before the move
        stream(int(HANDOVER_EVERY_S * HZ))
        pump(time.monotonic() + 5, m.all_acked)
        last_old = m.acks[-1]
        if rig is not None:
            rig.switch_to(2 if i % 2 == 0 else 1)  # the old path dies with the old uplink
        else:
            ctrl.call("cut", proto="tcp")  # loopback: the relay cuts the old connection
        changed = time.monotonic()
        c.reconnect()  # at once: told of the handover as soon as it happened (TCP + TLS)
        connected = time.monotonic()
        m.publish()
        pump(time.monotonic() + ACK_TIMEOUT_S, lambda t=last_old: m.acks[-1] > t)
        if m.acks[-1] <= last_old:
            raise TimeoutError("mqtt ack after address change")
        first_new = next(a for a in m.acks if a > last_old)
        gaps.append(first_new - last_old)
        parts["change"].append(changed - last_old)
        parts["tcp_tls"].append(connected - changed)
        parts["to_ack"].append(first_new - connected)
    out["gaps_address"] = gaps
    out["parts_address"] = {k: statistics.median(v) for k, v in parts.items()}
    c.disconnect()
    pump(time.monotonic() + 0.5)
    return out


def mqtt_rebind(cfg: dict, ctrl: Control, client_id: str, min_delay: int | None) -> list[float]:
    """NAT rebinding with paho's own network thread and reconnect logic (loop_start): the client
    is not told; it learns from the RST its next publish meets, reconnects after its reconnect
    delay (paho's default: 1 s, doubling, reset on CONNACK) and re-sends the unacknowledged
    publish after CONNACK."""
    m = MqttClient(cfg, client_id)
    c = m.c
    if min_delay is not None:
        c.reconnect_delay_set(min_delay=min_delay)

    def wait(pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.0005)

    c.connect(m.host, m.port, keepalive=MQTT_KEEPALIVE_S)
    c.loop_start()
    gaps = []
    try:
        wait(c.is_connected, 10, "mqtt connect")
        for _ in range(cfg["handovers"]):
            t = time.monotonic()
            for i in range(int(HANDOVER_EVERY_S * HZ)):
                time.sleep(max(0.0, t + i / HZ - time.monotonic()))
                m.publish()
            wait(m.all_acked, 5, "acks before the rebinding")
            last_old = m.acks[-1]
            ctrl.call("rebind", proto="tcp")
            m.publish()
            wait(lambda t=last_old: m.acks[-1] > t, ACK_TIMEOUT_S, "mqtt ack after rebinding")
            gaps.append(next(a for a in m.acks if a > last_old) - last_old)
    finally:
        c.disconnect()
        c.loop_stop()
    return gaps


def mqtt(cfg: dict) -> dict:
    ctrl = Control(cfg["control"])
    rig = rig_from(cfg)
    if rig is not None:
        rig.use_uplink(1)
    try:
        out = mqtt_manual(cfg, ctrl, rig)
        out["gaps_rebind"] = mqtt_rebind(cfg, ctrl, "bench-live-b", None)
        out["gaps_rebind_no_backoff"] = mqtt_rebind(cfg, ctrl, "bench-live-c", 0)
    finally:
        ctrl.close()
    return out


def main(argv: list[str]) -> int:
    role = argv[0]
    cfg = json.loads(sys.stdin.readline())
    if role == "backend":
        asyncio.run(backend(cfg))
    elif role == "relay":
        asyncio.run(relay(cfg))
    elif role == "quic":
        emit(result=asyncio.run(quic(cfg)))
    elif role == "mqtt":
        emit(result=mqtt(cfg))
    else:
        raise SystemExit(f"unknown role {role}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
