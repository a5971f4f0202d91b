"""In-process test rig: the real gateway (QUIC server, SQLite store, writer, hub) and real QUIC
clients (the seam's library, geostream/quic/) in the test's event loop. Only loopback (or
namespaces a test creates) is used.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

from agent.config import AgentConfig, JournalConfig, ServerConfig
from agent.journal_worker import JournalWorker
from agent.quic_link import QuicLink
from agent.readings import Position
from agent.uplink import Uplink
from backend.hub import Hub
from backend.store import open_store
from backend.writer import BatchWriter
from geostream import ALPN
from geostream.codec import FrameDecoder, encode
from geostream.errors import ProtocolError
from geostream.messages import Error, Hello, Message, Welcome
from geostream.quic import library


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free *now*, for a server that must be configured before it starts; another
    program may take it before then. Prefer binding port 0 and reading the port back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Await until predicate() is truthy (bounded in the loop's time: real, or emulated on
    tests/emuclock.py's loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class SlowStore:
    """A real store whose commits take longer, like a busy database (a clock, not a mock)."""

    def __init__(self, inner, per_commit_s: float, per_row_s: float = 0.0):
        self._inner = inner
        self.per_commit_s = per_commit_s
        self.per_row_s = per_row_s

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def write(self, readings, dead):
        await asyncio.sleep(self.per_commit_s + self.per_row_s * len(readings))
        await self._inner.write(readings, dead)


class GatewayRig:
    def __init__(self, tmp: Path, pki: dict, host: str = "127.0.0.1", slow=None,
                 backlog_high: int | None = None, writer_max_rows: int = 5000,
                 quic_library: str | None = None, db_url: str | None = None):
        """`quic_library`: the gateway's (None: the process's, FLEET_QUIC_LIBRARY); `db_url`:
        the store (None: SQLite in `tmp`, which `seqs` reads)."""
        from backend.gateway import Gateway

        self.tmp, self.pki, self.host = tmp, pki, host
        self.port = 0  # the kernel's choice, known once started
        self.db_path = tmp / "gateway.db"
        self.store = open_store(db_url or f"sqlite://{self.db_path}")
        store = SlowStore(self.store, *slow) if slow else self.store
        self.writer = BatchWriter(store, writer_max_rows)
        self.hub = Hub()
        kw = {"backlog_high": backlog_high} if backlog_high else {}
        self.gateway = Gateway(store, self.writer, self.hub, quic_library=quic_library, **kw)

    async def start(self) -> GatewayRig:
        await self.store.open()
        self.writer.start()
        await self.gateway.start(self.host, self.port, self.pki["cert"], self.pki["key"])
        self.port = self.gateway.port
        return self

    async def stop(self) -> None:
        await self.gateway.stop()
        await self.writer.stop()
        await self.store.close()

    async def provision(self, vehicle: str) -> str:
        return await self.store.add_vehicle(vehicle)

    async def seqs(self, vehicle: str) -> list[int]:
        def q():
            import sqlite3

            with sqlite3.connect(self.db_path, timeout=10) as db:
                return [r[0] for r in db.execute(
                    "SELECT seq FROM vehicle_telemetry WHERE vehicle_id=? ORDER BY seq",
                    (vehicle,))]
        return await asyncio.get_running_loop().run_in_executor(None, q)


def client_config(ca_file: str, server_name: str = "localhost", lib=None):
    """A client `QuicConfiguration` of QUIC library `lib` (None: the process's)."""
    cfg = (lib or library()).QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], idle_timeout=240.0, server_name=server_name,
        verify_mode=ssl.CERT_REQUIRED)
    cfg.load_verify_locations(cafile=ca_file)
    return cfg


class RawClient:
    """A real aioquic client speaking (or abusing) the session stream by hand."""

    def __init__(self, rig: GatewayRig, ca_file: str | None = None):
        self.rig = rig
        self.cfg = client_config(ca_file or rig.pki["ca"])
        self.decoder = FrameDecoder()
        self.messages: list[Message] = []
        self.link: QuicLink | None = None
        self.stream_id = 0

    def _on_data(self, sid: int, data: bytes, end: bool) -> None:
        try:
            self.messages.extend(self.decoder.feed(data))
        except ProtocolError as exc:  # record, the test decides
            self.messages.append(Error(int(exc.code), f"client-side: {exc}", True))

    async def connect(self) -> RawClient:
        self.link = QuicLink(self.cfg, (self.rig.host, self.rig.port), self._on_data)
        await asyncio.wait_for(self.link.connect("127.0.0.1"), 10)
        self.stream_id = self.link.conn.get_next_available_stream_id()
        return self

    def send_raw(self, data: bytes) -> None:
        self.link.send(self.stream_id, data)

    def send(self, msg: Message) -> None:
        self.send_raw(encode(msg))

    async def hello(self, vehicle: str, token: str, epoch: int = 7) -> Message:
        self.send(Hello(vehicle=vehicle, token=token, epoch=epoch))
        return await self.next_message((Welcome, Error))

    async def next_message(self, kinds=None, timeout: float = 10) -> Message:
        def find():
            for i, m in enumerate(self.messages):
                if kinds is None or isinstance(m, kinds):
                    return self.messages.pop(i)
            return None
        return await until(find, timeout, f"a message of {kinds}")

    async def closed(self, timeout: float = 10) -> str:
        await asyncio.wait_for(self.link.closed.wait(), timeout)
        return self.link.close_reason

    def close(self) -> None:
        if self.link:
            self.link.close()
            self.link.abort()


class AgentRig:
    """The real agent uplink and journal, fed positions by the test instead of a GPS."""

    def __init__(self, tmp: Path, vehicle: str, token: str, host: str, port: int, ca: str,
                 route_check_s: float | None = None, send_interval_ms: int = 1000,
                 boottime=None, quic_library: str = ""):
        """`quic_library`: the agent's (empty: the process's, FLEET_QUIC_LIBRARY)."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = AgentConfig(
            vehicle_id=vehicle, token=token,
            server=ServerConfig(host=host, port=port, ca_file=ca, server_name="localhost",
                                send_interval_ms=send_interval_ms, quic_library=quic_library),
            journal=JournalConfig(path=str(tmp / f"{vehicle}.journal.sqlite")),
        )
        self.journal = JournalWorker(self.config.journal.path)
        self.uplink = Uplink(self.config, self.journal, route_check_s=route_check_s,
                             boottime=boottime)
        self.task: asyncio.Task | None = None
        self.appended = 0
        self._t0 = 1_700_000_000_000

    def start(self) -> AgentRig:
        self.task = asyncio.get_running_loop().create_task(self.uplink.run())
        return self

    async def add(self, n: int = 1, rich: bool = False) -> None:
        """Append n positions; `rich` ones carry every optional field (~100 bytes of CBOR)."""
        batch = []
        more = dict(alt_m=3.25, mode=3, sats=11, hdop=0.8, clock_offset_ms=-12) if rich else {}
        for _ in range(n):
            self.appended += 1
            i = self.appended
            batch.append(Position(ts_ms=self._t0 + 100 * i, lat=52.0 + i * 1e-6,
                                  lon=4.0 + i * 1e-6, speed_kmh=50.1, course_deg=90.3, **more))
        await self.journal.append(batch)
        self.uplink.notify()

    async def stream(self, hz: float, seconds: float) -> None:
        """Append readings at `hz` for `seconds` (a GPS at 10 Hz)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = int(hz * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / hz - loop.time()))
            await self.add(1)

    async def pending(self) -> int:
        return (await self.journal.stats()).pending

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.journal.close()
