"""The uplink: drains the journal to the gateway over geostream/1.0 and applies acks.

Connection lifecycle lives here (connect, reconnect with exponential backoff + jitter); the
protocol lives in `geostream.session.ClientSession`; the socket in `QuicLink`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import random
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import SessionTicket

from geostream import ALPN
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Status
from geostream.session import Acknowledged, ClientSession, CommandReceived, PeerError, Welcomed
from geostream.tickets import ticket_from_json, ticket_to_json

from . import __version__
from .config import AgentConfig
from .journal import DrainState
from .journal_worker import JournalWorker
from .quic_link import QuicLink, route_source

log = logging.getLogger(__name__)

# docs/protocol.md §1: a 3-minute tunnel (+ one keepalive interval) resumes the same connection
IDLE_TIMEOUT_S = 240.0
# docs/protocol.md §1 stall rule: with data in flight and nothing heard for this long, send no
# new batches, so the congestion window stays free for the keepalive PINGs that find the path
# again after a dead zone (the journal keeps the readings meanwhile).
STALL_S = 5.0
# How often the agent asks the kernel which local address reaches the gateway (migration, §8);
# on Linux a netlink subscription to address and route changes also triggers the check at once.
ROUTE_CHECK_S = 0.5
# rtnetlink multicast groups: IPv4/IPv6 addresses and routes, links
_RTNL_GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400
TICKET_FILE_NAME = "session-ticket.json"
# Liveness (docs/protocol.md §8): a gateway restarted after kill -9 silently ignores packets of
# the connection it forgot, which looks like a dead zone. When the gateway has been silent this
# long with data or a PING unanswered, the agent tries a fresh handshake: if that succeeds while
# the old connection still hears nothing, the old one is gone and the agent reconnects at once.
PROBE_AFTER_S = 8.0
PROBE_EVERY_S = 15.0
# A clock jump this large between two 1 s liveness ticks means the agent was suspended or stopped;
# it then checks the connection at once, so it is back in < 2 s after resume (issue 7).
SUSPEND_S = 2.0
CONNECT_TIMEOUT_S = 10.0
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
# after auth-failed/revoked, retry slowly: an operator may re-provision the vehicle
AUTH_BACKOFF_S = 60.0
# readings per batch: small enough that acks flow every few hundred ms on a slow link
MAX_BATCH_READINGS = 1000


@dataclass
class UplinkStats:
    state: str = "disconnected"
    connects: int = 0
    batches_sent: int = 0
    readings_sent: int = 0
    readings_acked: int = 0
    last_error: str = ""
    last_ack_monotonic: float | None = None
    server_clock_offset_ms: int | None = None
    extra: dict = field(default_factory=dict)


def _ping(args: dict) -> tuple[bool, str]:
    return True, "pong"


class Uplink:
    def __init__(self, config: AgentConfig, journal: JournalWorker,
                 route_check_s: float | None = ROUTE_CHECK_S):
        self.config = config
        self.journal = journal
        self.stats = UplinkStats()
        self._wakeup = asyncio.Event()
        self.link: QuicLink | None = None
        self._started = 0.0
        self.route_check_s = route_check_s
        # downlink commands by name: args -> (ok, detail); anything else is answered ok=false
        self.command_handlers: dict[str, Callable[[dict], tuple[bool, str]]] = {"ping": _ping}
        self.commands_run: list[tuple[int, str]] = []
        self._answered: OrderedDict = OrderedDict()
        # called with each Acknowledged event after the journal applied it (benchmarks, tests)
        self.on_ack: Callable[[Acknowledged], None] | None = None
        self.ticket_path = Path(config.server.ticket_file or
                                Path(config.journal.path).parent / TICKET_FILE_NAME)
        # live pacing: when the last batch went, whether it was a live one, a pending timer
        self._send_interval_s = config.server.send_interval_ms / 1000
        self._last_send = -1e9
        self._live = False
        self._pace_timer: asyncio.TimerHandle | None = None
        # status reports (docs/protocol.md §3 status): the daemon sets the provider
        self.status_provider: Callable[[], Awaitable[Status]] | None = None
        self.status_interval_s = 30.0
        self._next_status = 0.0
        self._status_refused = False  # the gateway answered unknown-type: not on this session

    def notify(self) -> None:
        """New readings were committed to the journal."""
        self._wakeup.set()

    # --- session tickets (docs/protocol.md §8) --------------------------------------------

    def _save_ticket(self, ticket: SessionTicket) -> None:
        try:
            tmp = self.ticket_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ticket_to_json(ticket)))
            tmp.chmod(0o600)
            os.replace(tmp, self.ticket_path)
        except OSError as exc:
            log.warning("cannot store session ticket in %s: %s", self.ticket_path, exc)

    def _load_ticket(self) -> SessionTicket | None:
        try:
            ticket = ticket_from_json(json.loads(self.ticket_path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unusable session ticket %s: %s", self.ticket_path, exc)
            return None
        now = datetime.datetime.now(datetime.UTC)
        return ticket if ticket.not_valid_after > now else None

    # --- migration (docs/protocol.md §8) -------------------------------------------------

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
        if self.link is not None:
            await self.link.migrate(local_host)
            self.stats.extra["migrations"] = self.link.migrations
            self._flush_now()  # what waits goes at once: the new path is confirmed by data

    def _flush_now(self) -> None:
        self._live = False
        self._wakeup.set()

    def _paced(self) -> bool:
        """Live pacing: True (and a wake-up armed) while the next live batch must wait."""
        if not self._live:
            return False
        loop = asyncio.get_running_loop()
        wait = self._last_send + self._send_interval_s - loop.time()
        if wait <= 0:
            return False
        if self._pace_timer is None or self._pace_timer.cancelled():
            def due() -> None:
                self._pace_timer = None
                self._wakeup.set()
            self._pace_timer = loop.call_later(wait, due)
        return True

    async def _watch_route(self) -> None:
        changed = asyncio.Event()
        nl = _netlink_socket()
        loop = asyncio.get_running_loop()
        if nl is not None:
            def on_netlink() -> None:
                try:
                    while nl.recv(65536):
                        pass
                except BlockingIOError:
                    pass
                except OSError:
                    return
                changed.set()
            loop.add_reader(nl.fileno(), on_netlink)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.route_check_s):
                        await changed.wait()
                except TimeoutError:
                    pass
                changed.clear()
                try:
                    await self.check_path()
                except OSError as exc:
                    log.warning("migration failed: %s", exc)
        finally:
            if nl is not None:
                loop.remove_reader(nl.fileno())
                nl.close()

    # --- liveness (docs/protocol.md §8) --------------------------------------------------

    async def _watch_liveness(self, link: QuicLink, session: ClientSession, addr) -> None:
        loop = asyncio.get_running_loop()
        mono, boot = loop.time(), _boottime()
        while not link.closed.is_set():
            await asyncio.sleep(1.0)
            # a suspend (laptop lid, vehicle power management) or a stopped process shows as a
            # tick far too late, or as boot time running ahead of the monotonic clock (which
            # stands still during system suspend): the gateway may have dropped us meanwhile
            now_mono, now_boot = loop.time(), _boottime()
            resumed = (now_mono - mono > 1.0 + SUSPEND_S
                       or (now_boot - boot) - (now_mono - mono) > SUSPEND_S)
            mono, boot = now_mono, now_boot
            silent = (link.unanswered_for() > PROBE_AFTER_S
                      or (session.in_flight and link.quiet_for() > PROBE_AFTER_S))
            if resumed:
                log.info("suspend or stall detected: checking the connection now")
                link.ping()
            elif not silent:
                continue
            grace = 0.5 if resumed else 1.0  # time for the old connection to answer a PING
            if await self._gateway_reachable(addr) and link.quiet_for() > grace:
                link.ping()  # one last chance for the old connection
                await asyncio.sleep(grace)
                if link.quiet_for() > grace:
                    log.warning("gateway answers new handshakes but not this connection "
                                "(restarted, or dropped it during a suspend): reconnecting")
                    self.stats.extra["dead_connections"] = (
                        self.stats.extra.get("dead_connections", 0) + 1)
                    link.abort()
                    return
            if not resumed:
                await asyncio.sleep(PROBE_EVERY_S)
            mono, boot = loop.time(), _boottime()

    async def _gateway_reachable(self, addr) -> bool:
        """Does a fresh QUIC handshake with the gateway complete now?"""
        probe = QuicLink(self.quic_configuration(), addr, lambda *a: None,
                         session_ticket_handler=self._save_ticket)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await probe.connect(route_source(addr) or "::")
            return True
        except (OSError, ConnectionError, TimeoutError):
            return False
        finally:
            probe.close()
            probe.abort()

    def quic_configuration(self) -> QuicConfiguration:
        server = self.config.server
        cfg = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            idle_timeout=IDLE_TIMEOUT_S,
            server_name=server.server_name or server.host,
            verify_mode=ssl.CERT_REQUIRED,
        )
        cfg.load_verify_locations(cafile=server.ca_file)
        cfg.session_ticket = self._load_ticket()
        return cfg

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            delay = backoff
            try:
                await self._session()
                backoff = BACKOFF_MIN_S
                delay = BACKOFF_MIN_S
            except _AuthRefused as exc:
                self._set_state("refused", str(exc))
                delay = AUTH_BACKOFF_S
            except (OSError, ConnectionError, TimeoutError, ProtocolError) as exc:
                self._set_state("disconnected", str(exc) or type(exc).__name__)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            # full jitter keeps a fleet that lost the backend together from reconnecting in step
            await asyncio.sleep(random.uniform(delay / 2, delay))

    def _set_state(self, state: str, error: str = "") -> None:
        if state != self.stats.state or error != self.stats.last_error:
            if error:
                log.warning("uplink %s: %s", state, error)
            else:
                log.info("uplink %s", state)
        self.stats.state = state
        self.stats.last_error = error

    async def _session(self) -> None:
        if self.journal.epoch == 0:
            raise OSError("journal not open yet (disk trouble)")
        server = self.config.server
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(server.host, server.port, type=2)  # SOCK_DGRAM
        addr = infos[0][4]
        inbox: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        link = QuicLink(
            self.quic_configuration(), addr, lambda sid, data, end: inbox.put_nowait((data, end)),
            session_ticket_handler=self._save_ticket,
        )
        acked_through = await self.journal.call("acked_through")
        self._live = False  # a new session sends its backlog at once
        session = ClientSession(
            self.config.vehicle_id, self.config.token, self.journal.epoch, acked_through,
            agent=f"fleet-agent/{__version__}",
        )
        session.remember_answers(self._answered)
        self._set_state("connecting")
        self._started = loop.time()
        try:
            # bind to the address the route uses now, so a change of it is visible (§8)
            await link.start(route_source(addr) or "::")
            stream_id = link.conn.get_next_available_stream_id()
            # the hello goes as 0-RTT early data when a session ticket was offered. With pinning it
            # waits for the pin check instead (a rejected ticket would resend it as 1-RTT before
            # the check), so the token never reaches a server with another key
            pins = self.config.server.pin_sha256
            early = not pins
            if early:
                link.send(stream_id, session.data_to_send())
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.shield(link.connected)
            if pins and not link.session_resumed and link.peer_pin() not in pins:
                link.close(0, "certificate pin mismatch")
                raise ConnectionError(f"gateway key {link.peer_pin()} is not pinned")
            if not early:
                link.send(stream_id, session.data_to_send())
        except BaseException:
            link.abort()
            raise
        self.link = link
        self.stats.connects += 1
        self.stats.extra["session_resumed"] = link.session_resumed
        self.stats.extra["early_data_accepted"] = link.early_data_accepted
        loop = asyncio.get_running_loop()
        watchers = [loop.create_task(self._watch_liveness(link, session, addr))]
        if self.route_check_s:
            watchers.append(loop.create_task(self._watch_route()))
        try:
            await self._converse(link, stream_id, inbox, session)
        finally:
            for w in watchers:
                w.cancel()
            link.close()
            link.abort()
            self.link = None

    async def _converse(self, link: QuicLink, stream_id: int, inbox: asyncio.Queue,
                        session: ClientSession) -> None:
        # live-first draining (docs/journal.md §7)
        drain = DrainState(session.acked_through, epoch=session.epoch)

        closed = asyncio.ensure_future(link.closed.wait())
        getter = woken = closed
        try:
            while True:
                getter = asyncio.ensure_future(inbox.get())
                woken = asyncio.ensure_future(self._wakeup.wait())
                done, _ = await asyncio.wait(
                    {getter, woken, closed}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                if woken not in done:
                    woken.cancel()
                if closed in done and getter not in done:
                    raise ConnectionError(f"connection closed: {link.close_reason}")
                self._wakeup.clear()
                if getter in done:
                    data, end = getter.result()
                    try:
                        events = session.receive_data(data)
                    except ProtocolError as exc:
                        session.fail(exc)
                        link.send(stream_id, session.data_to_send())
                        link.close(int(exc.code), exc.reason)
                        raise
                    for event in events:
                        await self._handle(event, session)
                    link.send(stream_id, session.data_to_send())
                    if end or session.closed:
                        raise ConnectionError("server ended the session")
                await self._fill(session, drain, link, stream_id)
                await self._report(session, link, stream_id)
        finally:
            for f in (closed, getter, woken):  # never leave a waiter behind on cancellation
                f.cancel()

    async def _handle(self, event, session: ClientSession) -> None:
        if isinstance(event, Welcomed):
            self._set_state("connected")
            self._next_status, self._status_refused = 0.0, False  # report once at once
            # first packet → welcome: what a (re)connect costs before data flows
            self.stats.extra["welcome_after_s"] = asyncio.get_running_loop().time() - self._started
            self.stats.server_clock_offset_ms = time.time_ns() // 1_000_000 - event.server_time_ms
        elif isinstance(event, Acknowledged):
            await self.journal.call("acknowledge", event.through, event.ranges, event.epoch)
            self.stats.readings_acked += event.newly_acked
            self.stats.last_ack_monotonic = time.monotonic()
            if self.on_ack is not None:
                self.on_ack(event)
        elif isinstance(event, CommandReceived):
            cmd = event.command
            handler = self.command_handlers.get(cmd.name)
            if handler is None:
                log.info("command %d %r refused: not supported", cmd.id, cmd.name)
                session.acknowledge_command(cmd.id, False, f"unsupported command {cmd.name!r}")
                return
            try:
                ok, detail = handler(cmd.args)
            except Exception as exc:  # a failing command is answered, never kills the uplink
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.commands_run.append((cmd.id, cmd.name))
            log.info("command %d %r: ok=%s %s", cmd.id, cmd.name, ok, detail)
            session.acknowledge_command(cmd.id, ok, detail)
        elif isinstance(event, PeerError):
            if event.code == ErrorCode.UNKNOWN_TYPE:  # an older gateway: no status reports
                self._status_refused = True
            log.warning("server error %d: %s", event.code, event.reason)
            if event.code in (ErrorCode.AUTH_FAILED, ErrorCode.REVOKED):
                raise _AuthRefused(f"{ErrorCode(event.code).label}: {event.reason}")

    async def _next_batch(self, session: ClientSession, drain: DrainState,
                          max_readings: int) -> list[dict]:
        """The journal's next batch, within the welcome's exact `max_batch_bytes`.

        The journal estimates sizes from its stored payloads; when the encoded batch is larger,
        ask again with a smaller budget (on a copy of the drain state, so nothing is skipped).
        """
        budget = session.max_batch_bytes - 64
        for _ in range(8):
            trial = DrainState(drain.cursor, set(drain.live), drain.epoch)
            batch = await self.journal.call("next_batch", trial, max_readings, budget)
            if len(batch) <= 1 or session.batch_size(batch) <= session.max_batch_bytes:
                break
            budget = budget * 8 // 10
        drain.cursor, drain.live, drain.more = trial.cursor, trial.live, trial.more
        return batch

    async def _report(self, session: ClientSession, link: QuicLink, stream_id: int) -> None:
        """A status report when one is due (the daemon's status tick wakes the loop)."""
        now = asyncio.get_running_loop().time()
        if (self.status_provider is None or self._status_refused or not session.ready
                or now < self._next_status):
            return
        self._next_status = now + self.status_interval_s
        session.send_status(await self.status_provider())
        link.send(stream_id, session.data_to_send())

    async def _fill(self, session: ClientSession, drain: DrainState, link: QuicLink,
                    stream_id: int) -> None:
        """Send journal readings, live-first, while credit lasts; `drain` tracks progress."""
        while (room := session.credit_available) > 0:
            if session.in_flight and link.quiet_for() > STALL_S:
                break  # stall rule (docs/protocol.md §1): keep the window for keepalives
            if self._paced():
                break
            batch = await self._next_batch(session, drain, min(room, MAX_BATCH_READINGS))
            if not batch:
                break
            session.send_batch(batch)
            link.send(stream_id, session.data_to_send())
            self._last_send = asyncio.get_running_loop().time()
            self._live = not drain.more  # caught up: what comes next is live
            self.stats.batches_sent += 1
            self.stats.readings_sent += len(batch)


def _boottime() -> float:
    """CLOCK_BOOTTIME (counts system suspend) where available, else the monotonic clock."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()


def _netlink_socket() -> socket.socket | None:
    """A non-blocking rtnetlink socket subscribed to address/route changes (Linux), or None."""
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        nl.bind((0, _RTNL_GROUPS))
        nl.setblocking(False)
        return nl
    except (AttributeError, OSError):
        return None


class _AuthRefused(Exception):
    pass
