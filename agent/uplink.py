"""The uplink: drains the journal to the gateway over geostream/1.0 and applies acks.

Connection lifecycle lives here (connect, reconnect with exponential backoff + jitter); the
protocol lives in `geostream.session.ClientSession`; the socket in `QuicLink`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from dataclasses import dataclass, field

from aioquic.quic.configuration import QuicConfiguration

from geostream import ALPN
from geostream.errors import ErrorCode, ProtocolError
from geostream.session import Acknowledged, ClientSession, CommandReceived, PeerError, Welcomed

from . import __version__
from .config import AgentConfig
from .journal import DrainState
from .journal_worker import JournalWorker
from .quic_link import QuicLink

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 180.0  # docs/protocol.md §1: a 3-minute tunnel resumes the same connection
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


class Uplink:
    def __init__(self, config: AgentConfig, journal: JournalWorker):
        self.config = config
        self.journal = journal
        self.stats = UplinkStats()
        self._wakeup = asyncio.Event()
        self.link: QuicLink | None = None

    def notify(self) -> None:
        """New readings were committed to the journal."""
        self._wakeup.set()

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
            self.quic_configuration(), addr, lambda sid, data, end: inbox.put_nowait((data, end))
        )
        self._set_state("connecting")
        try:
            await asyncio.wait_for(link.connect(), CONNECT_TIMEOUT_S)
        except BaseException:
            link.abort()
            raise
        self.link = link
        self.stats.connects += 1
        stream_id = link.conn.get_next_available_stream_id()
        try:
            await self._converse(link, stream_id, inbox)
        finally:
            link.close()
            link.abort()
            self.link = None

    async def _converse(self, link: QuicLink, stream_id: int, inbox: asyncio.Queue) -> None:
        epoch = self.journal.epoch
        acked_through = await self.journal.call("acked_through")
        session = ClientSession(
            self.config.vehicle_id, self.config.token, epoch, acked_through,
            agent=f"fleet-agent/{__version__}",
        )
        link.send(stream_id, session.data_to_send())
        drain = DrainState(acked_through, epoch=epoch)  # live-first (docs/journal.md §7)

        closed = asyncio.ensure_future(link.closed.wait())
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
        finally:
            closed.cancel()

    async def _handle(self, event, session: ClientSession) -> None:
        if isinstance(event, Welcomed):
            self._set_state("connected")
            self.stats.server_clock_offset_ms = time.time_ns() // 1_000_000 - event.server_time_ms
        elif isinstance(event, Acknowledged):
            await self.journal.call("acknowledge", event.through, event.ranges, event.epoch)
            self.stats.readings_acked += event.newly_acked
            self.stats.last_ack_monotonic = time.monotonic()
        elif isinstance(event, CommandReceived):
            # no commands are implemented yet: refuse explicitly, as the protocol asks
            cmd = event.command
            log.info("command %d %r refused: not supported", cmd.id, cmd.name)
            session.acknowledge_command(cmd.id, False, f"unsupported command {cmd.name!r}")
        elif isinstance(event, PeerError):
            log.warning("server error %d: %s", event.code, event.reason)
            if event.code in (ErrorCode.AUTH_FAILED, ErrorCode.REVOKED):
                raise _AuthRefused(f"{ErrorCode(event.code).label}: {event.reason}")

    async def _fill(self, session: ClientSession, drain: DrainState, link: QuicLink,
                    stream_id: int) -> None:
        """Send journal readings, live-first, while credit lasts; `drain` tracks progress."""
        while (room := session.credit_available) > 0:
            batch = await self.journal.call(
                "next_batch", drain, min(room, MAX_BATCH_READINGS),
                session.max_batch_bytes - 64,
            )
            if not batch:
                break
            session.send_batch(batch)
            link.send(stream_id, session.data_to_send())
            self.stats.batches_sent += 1
            self.stats.readings_sent += len(batch)


class _AuthRefused(Exception):
    pass
