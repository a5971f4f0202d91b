"""The uplink's I/O shell: drains the journal to the gateway over geostream/1.0.

All decisions are `UplinkMachine`'s (agent/uplink_machine.py); this shell feeds it every input
(stream data, datagrams, route changes, probe results, the journal's wake-ups) through one
queue, arms one timer for `get_timer()`, and carries out the actions: connect, send, close,
ping, probe, migrate, apply acks to the journal, fill batches. The socket is `QuicLink`'s, the
ticket file `TicketFile`'s, route watching `agent.routes`'.

About 340 lines: the connect sequence (resolve, bind, 0-RTT hello or pin check first) and the
journal's batch budget retry are I/O that belongs to no other edge; the decisions are not here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from geostream import ALPN
from geostream.codec import EncodedReadings
from geostream.limits import IDLE_TIMEOUT_S
from geostream.messages import Status
from geostream.quic import AGENT_DEFAULT_LIBRARY, library
from geostream.quic_acks import ack_delay_for
from geostream.session import Acknowledged

from . import __version__
from .commands import Answer
from .config import AgentConfig, ServerConfig
from .journal import DrainState
from .journal_worker import JournalWorker
from .quic_link import QuicLink, probe_version
from .routes import ROUTE_CHECK_S, route_source, watch_routes
from .ticket_file import TICKET_FILE_NAME, TicketFile
from .uplink_actions import (
    Abort,
    ApplyAck,
    Close,
    Connect,
    Migrate,
    Ping,
    Probe,
    RunCommand,
    SendData,
    UplinkStats,
)
from .uplink_machine import UplinkMachine, log

__all__ = ["ROUTE_CHECK_S", "TICKET_FILE_NAME", "Uplink", "UplinkStats"]

CONNECT_TIMEOUT_S = 10.0


# --- the inbox: what the loop reacts to, besides its timer ---------------------------------

@dataclass(frozen=True, slots=True)
class Wake:
    """New readings were committed to the journal."""


@dataclass(frozen=True, slots=True)
class StreamData:
    """Bytes on the connection's stream (`end`: the peer finished it)."""
    link: QuicLink
    data: bytes
    end: bool


@dataclass(frozen=True, slots=True)
class LinkClosed:
    link: QuicLink


@dataclass(frozen=True, slots=True)
class ProbeDone:
    """A liveness probe of the path answered (`reachable`) or gave up."""
    link: QuicLink | None  # the connection it was about (None: none was up)
    reachable: bool


@dataclass(frozen=True, slots=True)
class RouteSeen:
    """The route to the gateway now leaves from `local_host`."""
    link: QuicLink
    local_host: str


@dataclass(frozen=True, slots=True)
class CommandDone:
    """A command the runner ran has its answer (whatever connection is open now sends it)."""
    command_id: int
    answer: Answer


InboxEvent = Wake | StreamData | LinkClosed | ProbeDone | RouteSeen | CommandDone
# a batch encoded larger than max_batch_bytes is asked again with 80 % of the budget, at most
# this often (the journal's size estimate comes from its stored payloads)
_BUDGET_TRIES = 8


class Uplink:
    def __init__(self, config: AgentConfig, journal: JournalWorker,
                 route_check_s: float | None = ROUTE_CHECK_S,
                 boottime: Callable[[], float] | None = None):
        self.config = config
        # CLOCK_BOOTTIME, for suspend detection; a test on an emulated clock passes its own
        self._boottime = boottime or _boottime
        self.journal = journal
        self.route_check_s = route_check_s
        self.machine = UplinkMachine(config.server.send_interval_ms / 1000)
        self.link: QuicLink | None = None
        # called with each Acknowledged event after the journal applied it (benchmarks, tests)
        self.on_ack: Callable[[Acknowledged], None] | None = None
        # status reports (docs/protocol.md §3 status): the daemon sets the provider
        self.status_provider: Callable[[], Awaitable[Status]] | None = None
        # the QUIC library behind the seam (geostream/quic/): its adapter module
        self.quic = library(config.server.quic_library or None, AGENT_DEFAULT_LIBRARY)
        self.tickets = TicketFile(config.server.ticket_file or
                                  Path(config.journal.path).parent / TICKET_FILE_NAME, self.quic)
        self._inbox: asyncio.Queue[InboxEvent] = asyncio.Queue()
        self._woken = False
        self._tasks: set[asyncio.Task] = set()  # the link's watchers and probes
        self._command_tasks: set[asyncio.Task] = set()  # commands being run
        self._addr: tuple | None = None
        self._stream_id = 0
        self._drain: DrainState | None = None

    # --- what others see ---------------------------------------------------------------

    @property
    def stats(self) -> UplinkStats:
        return self.machine.stats

    @property
    def status_interval_s(self) -> float:
        return self.machine.status_interval_s

    @status_interval_s.setter
    def status_interval_s(self, seconds: float) -> None:
        self.machine.status_interval_s = seconds

    @property
    def ticket_path(self) -> Path:
        return self.tickets.path

    @property
    def command_handlers(self) -> dict:
        return self.machine.commands.handlers

    @property
    def commands_run(self) -> list[tuple[int, str]]:
        runner = self.machine.commands.runner
        return runner.run_log if runner is not None else self.machine.commands.run_log

    def status(self) -> dict:
        """Link state, server, RTT, age of the last ack, last error and counters."""
        server = self.config.server
        rtt = self.link.rtt_s() if self.link is not None else None
        return {**self.machine.status(asyncio.get_running_loop().time()),
                "server": f"{server.host}:{server.port}",
                "rtt_ms": None if rtt is None else round(rtt * 1000, 1)}

    def notify(self) -> None:
        """New readings were committed to the journal."""
        if not self._woken:
            self._woken = True
            self._inbox.put_nowait(Wake())

    # --- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        m = self.machine
        try:
            await self._do(m.start(loop.time()))
            while True:
                at = m.get_timer()
                if at is not None and at <= loop.time():  # due: before more input can starve it
                    await self._do(m.handle_timer(loop.time(), self._boottime()))
                else:
                    try:
                        async with asyncio.timeout_at(at):
                            event = await self._inbox.get()
                    except TimeoutError:
                        await self._do(m.handle_timer(loop.time(), self._boottime()))
                    else:
                        await self._input(event)
                await self._fill()
                await self._report()
        finally:
            self._drop_link()
            for t in self._command_tasks:
                t.cancel()

    async def _input(self, event: InboxEvent) -> None:
        now, m = asyncio.get_running_loop().time(), self.machine
        if isinstance(event, Wake):
            self._woken = False
        elif isinstance(event, CommandDone):
            a = event.answer
            await self._do(m.command_answered(now, event.command_id, a.ok, a.detail, a.result))
        elif event.link is not self.link:
            return  # from a connection that is gone
        elif isinstance(event, StreamData):
            await self._do(m.stream_data(now, event.data, event.end))
        elif isinstance(event, LinkClosed):
            await self._do(m.disconnected(now, f"connection closed: {event.link.close_reason}"))
        elif isinstance(event, ProbeDone):
            await self._do(m.probe_done(now, event.reachable))
        elif isinstance(event, RouteSeen):
            await self._do(m.route_seen(now, event.local_host))

    async def _do(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, SendData):
                if self.link is not None:
                    self.link.send(self._stream_id, a.data)
            elif isinstance(a, ApplyAck):
                ack = a.ack
                await self.journal.acknowledge(ack.through, ack.ranges, ack.epoch)
                if self.on_ack is not None:
                    self.on_ack(ack)
            elif isinstance(a, Connect):
                await self._connect()
            elif isinstance(a, Ping):
                if self.link is not None:
                    self.link.ping()
            elif isinstance(a, Probe):
                self._spawn(self._probe(self.link))
            elif isinstance(a, Migrate):
                await self.migrate(a.local_host)
            elif isinstance(a, Close):
                if self.link is not None:
                    self.link.close(a.code, a.reason)
                self._drop_link()
            elif isinstance(a, Abort):
                self._drop_link(tell_peer=False)
            elif isinstance(a, RunCommand):
                # not one of the link's tasks: a command outlives a dropped connection
                task = asyncio.get_running_loop().create_task(self._run_command(a.command))
                self._command_tasks.add(task)
                task.add_done_callback(self._command_tasks.discard)

    async def _run_command(self, cmd) -> None:
        runner = self.machine.commands.runner
        assert runner is not None, "RunCommand comes only with a runner"
        answer = await runner.run(cmd)
        if answer is not None:
            self._inbox.put_nowait(CommandDone(cmd.id, answer))

    # --- connecting --------------------------------------------------------------------

    async def handshake_with(self, server: ServerConfig) -> bool:
        """Does a QUIC handshake with `server` (another configuration's [server], e.g. the
        one before a config.set) complete now? Its session ticket is not kept."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(server.host, server.port, type=2)  # SOCK_DGRAM
            cfg = self.quic_configuration(server, tickets=False)
        except (OSError, ValueError) as exc:
            log.info("handshake with %s:%s: %s", server.host, server.port, exc)
            return False
        addr = infos[0][4]
        probe = QuicLink(cfg, addr, lambda *a: None, lib=self.quic)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await probe.connect(route_source(addr) or "::")
            return True
        except (OSError, ConnectionError, TimeoutError):
            return False
        finally:
            probe.close()
            probe.abort()

    def quic_configuration(self, server: ServerConfig | None = None, tickets: bool = True):
        server = server or self.config.server
        cfg = self.quic.QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            idle_timeout=IDLE_TIMEOUT_S,
            server_name=server.server_name or server.host,
            verify_mode=ssl.CERT_REQUIRED,
        )
        cfg.load_verify_locations(cafile=server.ca_file)
        if tickets:
            cfg.session_ticket = self.tickets.load()
        return cfg

    async def _connect(self) -> None:
        loop, m = asyncio.get_running_loop(), self.machine
        try:
            await self._open(loop, m)
        except (OSError, ConnectionError, TimeoutError) as exc:
            await self._do(m.disconnected(loop.time(), str(exc) or type(exc).__name__))

    async def _open(self, loop: asyncio.AbstractEventLoop, m: UplinkMachine) -> None:
        if self.journal.epoch == 0:
            raise OSError("journal not open yet (disk trouble)")
        server = self.config.server
        infos = await loop.getaddrinfo(server.host, server.port, type=2)  # SOCK_DGRAM
        self._addr = addr = infos[0][4]
        acked_through = await self.journal.acked_through()
        link = QuicLink(self.quic_configuration(), addr,
                        lambda sid, data, end: self._inbox.put_nowait(StreamData(link, data, end)),
                        session_ticket_handler=self.tickets.save,
                        ack_delay_s=ack_delay_for(self.machine.send_interval_s), lib=self.quic)
        link.on_datagram = m.datagram_received
        link.on_ping = m.ping_sent
        self.link = link
        # bind to the address the route uses now, so a change of it is visible (§8)
        await link.start(route_source(addr) or "::")
        self._stream_id = link.conn.get_next_available_stream_id()
        # the hello goes as 0-RTT early data when a session ticket was offered. With pinning it
        # waits for the pin check instead (a rejected ticket would resend it as 1-RTT before
        # the check), so the token never reaches a server with another key
        pins = server.pin_sha256
        await self._do(m.connecting(
            loop.time(), vehicle=self.config.vehicle_id, token=self.config.token,
            epoch=self.journal.epoch, acked_through=acked_through,
            agent=f"fleet-agent/{__version__}", early=not pins))
        self._drain = DrainState(acked_through, epoch=self.journal.epoch)  # live-first
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.shield(link.connected)
        except TimeoutError:
            # an attempt given up is closed, not dropped: before its handshake completes that
            # is an Initial-level CONNECTION_CLOSE, so the gateway ends it now instead of
            # keeping it (its flight re-sent) to its 60 s handshake deadline (§1)
            link.close(0, "connect timed out")
            raise
        if pins and not link.session_resumed and link.peer_pin() not in pins:
            link.close(0, "certificate pin mismatch")
            raise ConnectionError(f"gateway key {link.peer_pin()} is not pinned")
        self._spawn(self._closed(link))
        if self.route_check_s:
            self._spawn(watch_routes(
                addr, lambda src: self._inbox.put_nowait(RouteSeen(link, src)),
                self.route_check_s))
        await self._do(m.handshake_done(
            loop.time(), local_host=link.local_host, resumed=link.session_resumed,
            early_data_accepted=link.early_data_accepted, boot=self._boottime(),
            peer_ack_delay_s=link.lib.ack_delays(link.conn)[1]))

    async def _closed(self, link: QuicLink) -> None:
        await link.closed.wait()
        self._inbox.put_nowait(LinkClosed(link))

    def _drop_link(self, tell_peer: bool = True) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        if self.link is not None:
            if tell_peer:
                self.link.close()
            self.link.abort()
            self.link = None

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- migration and liveness (docs/protocol.md §8) ----------------------------------

    async def check_path(self) -> bool:
        """Migrate the live connection if the route to the gateway now uses another address."""
        link = self.link
        if link is None or link.closed.is_set():
            return False
        src = route_source(link.server_addr)
        if src is None or src == link.local_host:
            return False
        await self.migrate(src)
        return True

    async def migrate(self, local_host: str) -> None:
        """Move the live connection to a new socket on local_host and a new connection ID."""
        link, m = self.link, self.machine
        if link is None:
            return
        try:
            await link.migrate(local_host)
        except OSError as exc:
            log.warning("migration failed: %s", exc)
            m.migrated(asyncio.get_running_loop().time(), None, link.migrations)
            return
        m.migrated(asyncio.get_running_loop().time(), local_host, link.migrations)
        self.notify()  # what waits goes at once

    async def _probe(self, link: QuicLink | None) -> None:
        """Does the gateway's process answer a new packet now? A Version Negotiation probe
        from a fresh socket (agent/version_probe.py), not a handshake: it costs the gateway
        no crypto and no handshake slot."""
        addr = self._addr
        assert addr is not None, "a probe follows a connection, which resolved the address"
        try:
            ok = await probe_version(addr, route_source(addr) or "::", CONNECT_TIMEOUT_S)
        except OSError:
            ok = False
        self._inbox.put_nowait(ProbeDone(link, ok))

    # --- sending -----------------------------------------------------------------------

    async def _fill(self) -> None:
        """Send journal readings, live-first, while the machine gives room."""
        m, loop = self.machine, asyncio.get_running_loop()
        while (self.link is not None and (drain := self._drain) is not None
               and (room := m.room(loop.time())) > 0):
            batch = await self._next_batch(drain, room)
            if not batch or self.link is None:
                break
            await self._do(m.batch_sent(loop.time(), batch, drain.more))

    async def _report(self) -> None:
        """A status report when one is due (the daemon's status tick wakes the loop)."""
        m, now = self.machine, asyncio.get_running_loop().time()
        if self.status_provider is None or self.link is None or not m.status_due(now):
            return
        await self._do(m.status_report(now, await self.status_provider()))

    async def _next_batch(self, drain: DrainState, max_readings: int) -> EncodedReadings:
        """The journal's next batch, within the welcome's exact `max_batch_bytes`.

        The journal estimates sizes from its stored payloads; when the encoded batch is larger,
        ask again with a smaller budget (on a copy of the drain state, so nothing is skipped).
        """
        session = self.machine.session
        assert session is not None, "batches are asked for only while connected"
        budget = session.max_batch_bytes - 64
        for _ in range(_BUDGET_TRIES):
            trial = DrainState(drain.cursor, set(drain.live), drain.epoch)
            batch = await self.journal.next_batch(trial, max_readings, budget)
            if len(batch) <= 1 or session.batch_size(batch) <= session.max_batch_bytes:
                break
            budget = budget * 8 // 10
        drain.cursor, drain.live, drain.more = trial.cursor, trial.live, trial.more
        return batch


def _boottime() -> float:
    """CLOCK_BOOTTIME (counts system suspend) where available, else the monotonic clock."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()
