"""One simulated vehicle's link in the load generator: its QUIC connection through the agent's
own `QuicLink`, its geostream `ClientSession`, pacing, acks, reconnects and migrations. The
`Worker` of loadtest/client.py runs many of them on one event loop."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from agent.quic_link import QuicLink
from geostream.errors import ProtocolError
from geostream.quic_acks import ack_delay_for
from geostream.session import Acknowledged, ClientSession, PeerError, Welcomed

from .fleet import SimVehicle

if TYPE_CHECKING:
    from .client import Worker

CONNECT_TIMEOUT_S = 30.0
RECONNECT_DELAY_S = (0.2, 1.0)
# Batches one pump may queue (credit ends it sooner: MAX_CREDIT / fleet.MAX_BATCH_READINGS = 8).
MAX_BATCHES_PER_PUMP = 16


class Driver:
    """The I/O edge of one vehicle: connection, session, pace timer, mode actions."""

    def __init__(self, worker: Worker, sim: SimVehicle, server: tuple[str, int]):
        self.w = worker
        self.sim = sim
        self.server = server
        self.link: QuicLink | None = None
        self.session: ClientSession | None = None
        self.stream_id = 0
        self.online = True
        self.welcomed: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False  # we closed it on purpose (churn, outage, end)
        self.drain_target = 0  # storm: the backlog to drain after reconnecting
        self.drained_after: float | None = None
        self.reconnected_at = 0.0
        self.links: list[QuicLink] = []  # every connection it made, for the datagram counts
        self.last_rx = 0.0  # when stream data last arrived (the agent's stall rule, STALL_S)

    # --- connection -----------------------------------------------------------------------

    async def connect(self) -> None:
        loop = self.w.loop
        self._closing = False
        self.sim.new_session()
        acked_through = (next(iter(self.sim.unacked)) - 1) if self.sim.unacked else self.sim.made
        session = ClientSession(self.sim.vehicle_id, self.sim.token, self.sim.epoch,
                                acked_through, agent="fleet-loadtest")
        link = QuicLink(self.w.quic_config, self.server, self._on_data,
                        ack_delay_s=ack_delay_for(self.w.send_interval_s), lib=self.w.quic)
        self.link, self.session = link, session
        self.links.append(link)
        self.welcomed = loop.create_future()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await link.start(self.w.local_host)
                self.stream_id = link.conn.get_next_available_stream_id()
                link.send(self.stream_id, session.data_to_send())
                await asyncio.shield(link.connected)
                await self.welcomed
        except (OSError, ConnectionError, TimeoutError) as exc:
            link.abort()
            if link is self.link:  # not superseded by a churn reconnect meanwhile
                self.w.error(f"connect: {type(exc).__name__}")
                self._retry_later()
            return
        if link is not self.link:
            return
        self.w.connects += 1
        self.last_rx = loop.time()
        loop.create_task(self._watch(link))
        self.pump()

    async def _watch(self, link: QuicLink) -> None:
        await link.closed.wait()
        if link is self.link and not self._closing and self.online:
            self.w.error(f"closed: {link.close_reason[:60]}")
            self._retry_later()

    def _retry_later(self) -> None:
        if self.w.stopping or not self.online:
            return
        self.link = self.session = None
        self.w.loop.call_later(random.uniform(*RECONNECT_DELAY_S),
                               lambda: self.w.loop.create_task(self.connect()))

    def disconnect(self, tell_peer: bool) -> None:
        self._closing = True
        if self.link is not None:
            if tell_peer:
                self.link.close(0, "load test")
            self.link.abort()
        self.link = self.session = None

    async def migrate(self) -> None:
        if self.link is not None and not self.link.closed.is_set():
            await self.link.migrate(self.w.next_local_host())
            self.w.migrations += 1

    # --- data -----------------------------------------------------------------------------

    def _on_data(self, stream_id: int, data: bytes, end: bool) -> None:
        session, link = self.session, self.link
        if session is None or link is None:
            return
        self.last_rx = self.w.loop.time()
        try:
            events = session.receive_data(data)
        except ProtocolError as exc:
            self.w.error(f"protocol: {exc.code.name}")
            return
        now = self.w.loop.time()
        for ev in events:
            if isinstance(ev, Welcomed):
                if self.welcomed is not None and not self.welcomed.done():
                    self.welcomed.set_result(None)
            elif isinstance(ev, Acknowledged):
                self._acked(ev, now)
            elif isinstance(ev, PeerError):
                self.w.error(f"peer error {ev.code}")
        out = session.data_to_send()
        if out:
            link.send(self.stream_id, out)
        if self.sim._unsent:  # backlog goes as soon as credit comes back
            self.pump()

    def _acked(self, ev: Acknowledged, now: float) -> None:
        unacked = self.sim.unacked
        done = []
        for q in unacked:  # ordered by q: the cumulative part is a prefix
            if q > ev.through:
                break
            done.append(q)
        for lo, hi in ev.ranges:
            done.extend(q for q in range(lo, hi + 1) if q in unacked)
        new = self.sim.acknowledged(done, now)
        self.w.acked_now(new)
        if (self.drained_after is None and self.drain_target
                and (not unacked or next(iter(unacked)) > self.drain_target)):
            self.drained_after = now - self.reconnected_at

    def pump(self) -> None:
        """Send batches while credit and readings last, as the agent's uplink does: during a
        backlog several batches are in flight, so acks flow while the next ones travel."""
        session, link = self.session, self.link
        if session is None or link is None or not session.ready or not self.online:
            return
        sent = False
        for _ in range(MAX_BATCHES_PER_PUMP):
            credit = session.credit_available
            if credit <= 0 or not self.sim.has_unsent:
                break
            batch = self.sim.next_batch(credit, self.w.loop.time())
            if not batch:
                break
            session.send_batch(batch)
            self.w.batches += 1
            sent = True
        if sent:
            link.send(self.stream_id, session.data_to_send())

    def _stalled(self, now: float) -> bool:
        """The agent's rule (docs/protocol.md §1): readings in flight, nothing heard for
        STALL_S. Only when the spec asks (`stall_s`, the cluster tests: a killed node): the
        load test's figures stay comparable with runs before the rule."""
        stall_s = self.w.stall_s
        return (stall_s is not None and self.link is not None and self.session is not None
                and self.session.ready and bool(self.sim.sent_at)
                and now - self.last_rx > stall_s)

    # --- pacing ---------------------------------------------------------------------------

    def start_pacing(self, first: float) -> None:
        self._timer = self.w.loop.call_at(first, self._tick)

    def _tick(self) -> None:
        now = self.w.loop.time()
        self.sim.make_due(now)
        self.w.on_tick(self, now)
        if self._stalled(now):  # the node behind the address is gone: a fresh handshake
            self.w.error("stalled")
            self.disconnect(tell_peer=False)
            self._closing = False
            self._retry_later()
        self.pump()
        if self.sim.making:
            self._timer = self.w.loop.call_at(now + self.w.send_interval_s, self._tick)


def datagrams(drivers) -> tuple[int, int]:
    """Datagrams all vehicles sent and received so far (gateway in, gateway out)."""
    links = [link for d in drivers for link in d.links]
    return (sum(link.datagrams_sent for link in links),
            sum(link.datagrams_received for link in links))
