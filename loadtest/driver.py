"""One simulated vehicle's uplink in the load generator: the agent's own decisions, a thin shell.

Every decision is the agent's `UplinkMachine` (agent/uplink_machine.py: connecting and the
reconnect backoff, live pacing and the stall rule, liveness probes, migration, acks); what the
next batch holds is the agent's drain order (`agent.journal_drain.plan_batch`, through the
vehicle's `MemoryJournal`). This shell does what agent/uplink.py does for the agent, with
callbacks instead of an inbox task, so thousands of vehicles share one event loop cheaply: one
timer per vehicle (the machine's `get_timer()`), readings made when it fires, the QUIC
connection through the agent's own `agent.quic_link.QuicLink`.

The load test's modes act on it as the world would: `outage()` takes the radio away (the
connection is gone, connection attempts wait for the radio), `churn()` ends the connection,
`move()` gives the vehicle a new address (the machine migrates).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agent.journal_drain import DrainState
from agent.quic_link import QuicLink
from agent.uplink_actions import (
    Abort,
    ApplyAck,
    Close,
    Connect,
    Migrate,
    Ping,
    Probe,
    SendData,
)
from agent.uplink_machine import State, UplinkMachine
from geostream.clock import wall_ms
from geostream.messages import Status
from geostream.quic_acks import ack_delay_for

from .fleet import SimVehicle

if TYPE_CHECKING:
    from .client import Worker

# The agent's own bound (agent/uplink.py): a handshake that takes longer is a failed connect.
CONNECT_TIMEOUT_S = 10.0
# The journal's byte budget is the welcome's max_batch_bytes less this much for the batch's
# own framing (agent/uplink.py asks with the same margin).
BATCH_FRAMING_BYTES = 64


class Driver:
    """The I/O edge of one vehicle: carries out its `UplinkMachine`'s actions."""

    def __init__(self, worker: Worker, sim: SimVehicle, server: tuple[str, int]):
        self.w = worker
        self.sim = sim
        self.server = server
        self.machine = UplinkMachine(worker.send_interval_s, random=worker.rng.random)
        self.link: QuicLink | None = None
        self.stream_id = 0
        self.drain: DrainState | None = None
        self.online = True           # the radio is up (storm: down during the outage)
        self._parked = False         # a Connect waits for the radio
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._watch: asyncio.Task | None = None
        self.welcomed = worker.loop.create_future()  # the first welcome (the ramp waits for it)
        self.drain_target = 0        # storm: the backlog to drain after reconnecting
        self.drained_after: float | None = None
        self.reconnected_at = 0.0
        self.links: list[QuicLink] = []  # every connection it made, for the datagram counts

    # --- inputs --------------------------------------------------------------------------

    def start(self) -> None:
        self._do(self.machine.start(self.w.loop.time()))
        self._after()

    def _on_data(self, link: QuicLink, data: bytes, end: bool) -> None:
        if link is not self.link:
            return  # from a connection that is gone
        m, now = self.machine, self.w.loop.time()
        before = m.state
        self._do(m.stream_data(now, data, end))
        if before is not State.CONNECTED and m.state is State.CONNECTED:
            self.w.connects += 1
            if not self.welcomed.done():
                self.welcomed.set_result(None)
        self._after()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self.w.loop.time()
        self._do(self.machine.handle_timer(now))
        self._after()

    def _closed(self, link: QuicLink) -> None:
        if link is self.link:
            self.w.error(f"closed: {link.close_reason[:60]}")
            self._do(self.machine.disconnected(self.w.loop.time(),
                                               f"connection closed: {link.close_reason}"))
            self._after()

    # --- what the load test's modes do -------------------------------------------------

    def outage(self) -> None:
        """The radio is gone: nothing reaches the gateway (which is not told)."""
        self.online = False
        if self.link is not None:
            self._drop(tell_peer=False)
            self._do(self.machine.disconnected(self.w.loop.time(), "outage"))
        self._after()

    def radio_back(self) -> None:
        """The radio is back: a connection attempt that waited for it goes now."""
        self.online = True
        if self._parked:
            self._parked = False
            self.w.loop.create_task(self._connect())

    def churn(self) -> None:
        """The connection ends (the gateway is told); the machine reconnects after its backoff."""
        if self.link is not None:
            self.w.reconnects += 1
            self.link.close(0, "load test")
            self._drop(tell_peer=False)
            self._do(self.machine.disconnected(self.w.loop.time(), "churn"))
            self._after()

    def move(self, local_host: str) -> None:
        """The route to the gateway now leaves from `local_host` (a new address)."""
        if self.link is not None:
            self._do(self.machine.route_seen(self.w.loop.time(), local_host))

    def stop(self) -> None:
        """End of the run: close, and connect no more."""
        self.online = False
        self._parked = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if self.link is not None:
            self.link.close(0, "load test")
            self._drop()

    # --- actions -------------------------------------------------------------------------

    def _do(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, SendData):
                if self.link is not None:
                    self.link.send(self.stream_id, a.data)
            elif isinstance(a, ApplyAck):
                self._acked(a.ack.through, a.ack.ranges)
            elif isinstance(a, Connect):
                if self.online:
                    self.w.loop.create_task(self._connect())
                elif not self.w.stopping:
                    self._parked = True
            elif isinstance(a, Ping):
                if self.link is not None:
                    self.link.ping()
            elif isinstance(a, Probe):
                self.w.loop.create_task(self._probe(self.link))
            elif isinstance(a, Migrate):
                self.w.loop.create_task(self._migrate(a.local_host))
            elif isinstance(a, Close):
                if self.link is not None:
                    self.link.close(a.code, a.reason)
                self._drop(tell_peer=False)
            elif isinstance(a, Abort):
                self._drop(tell_peer=False)

    def _after(self) -> None:
        """After every input, as the agent's loop: make what is due, fill, report, re-arm."""
        m, sim, now = self.machine, self.sim, self.w.loop.time()
        sim.make_due(now)
        drain, link = self.drain, self.link
        session = m.session
        while (link is not None and drain is not None and session is not None
               and (room := m.room(now)) > 0):
            batch = sim.next_batch(drain, room, session.max_batch_bytes - BATCH_FRAMING_BYTES,
                                   now)
            if not batch:
                break
            self.w.batches += 1
            self._do(m.batch_sent(now, batch, drain.more))
        if link is not None and m.status_due(now):
            self._do(m.status_report(now, Status(
                time=wall_ms(), backlog=sim.journal.pending, journal_bytes=0,
                sources=(("gps", "ok"), ("can0", "ok")))))
        at = m.get_timer()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.w.loop.call_at(at, self._on_timer) if at is not None else None
            self._timer_at = at

    def _acked(self, through: int, ranges) -> None:
        now = self.w.loop.time()
        self.w.acked_now(self.sim.acknowledge(through, ranges, now))
        if (self.drained_after is None and self.drain_target
                and self.sim.journal.acked_through() >= self.drain_target):
            self.drained_after = now - self.reconnected_at

    async def _connect(self) -> None:
        """The agent's connect sequence (agent/uplink.py `_open`), without name resolution,
        session tickets or pinning (the load test's vehicles connect with a full handshake)."""
        loop, m, sim = self.w.loop, self.machine, self.sim
        link: QuicLink | None = None
        try:
            async with self.w.connecting:
                if not self.online:  # the radio went while waiting for a turn
                    self._parked = True
                    return
                link = QuicLink(self.w.quic_config, self.server,
                                lambda sid, data, end: self._on_data(link, data, end),
                                ack_delay_s=ack_delay_for(m.send_interval_s), lib=self.w.quic)
                link.on_datagram = m.datagram_received
                link.on_ping = m.ping_sent
                self.link = link
                self.links.append(link)
                await link.start(self.w.local_host)
                self.stream_id = link.conn.get_next_available_stream_id()
                acked_through = sim.journal.acked_through()
                self._do(m.connecting(loop.time(), vehicle=sim.vehicle_id, token=sim.token,
                                      epoch=sim.epoch, acked_through=acked_through,
                                      agent="fleet-loadtest"))
                self.drain = DrainState(acked_through, epoch=sim.epoch)
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await asyncio.shield(link.connected)
        except (OSError, ConnectionError, TimeoutError) as exc:
            if link is not None and link is not self.link:
                link.abort()
                return  # superseded (the connection was ended meanwhile)
            self.w.error(f"connect: {type(exc).__name__}")
            self._drop(tell_peer=False)
            self._do(m.disconnected(loop.time(), str(exc) or type(exc).__name__))
            self._after()
            return
        if link is not self.link:
            return
        self._watch = loop.create_task(self._watch_closed(link))
        self._do(m.handshake_done(loop.time(), local_host=link.local_host))
        self._after()

    async def _watch_closed(self, link: QuicLink) -> None:
        await link.closed.wait()
        self._closed(link)

    async def _probe(self, link: QuicLink | None) -> None:
        """Does a fresh handshake with the gateway complete now? (agent/uplink.py `_probe`)"""
        probe = QuicLink(self.w.quic_config, self.server, lambda *a: None, lib=self.w.quic)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await probe.connect(self.w.local_host)
            ok = True
        except (OSError, ConnectionError, TimeoutError):
            ok = False
        finally:
            probe.close()
            probe.abort()
        if link is self.link:
            self._do(self.machine.probe_done(self.w.loop.time(), ok))
            self._after()

    async def _migrate(self, local_host: str) -> None:
        link, m = self.link, self.machine
        if link is None:
            return
        try:
            await link.migrate(local_host)
        except OSError:
            m.migrated(self.w.loop.time(), None, link.migrations)
            return
        self.w.migrations += 1
        m.migrated(self.w.loop.time(), local_host, link.migrations)
        self._after()  # what waits goes at once

    def _drop(self, tell_peer: bool = True) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        link, self.link = self.link, None
        if link is not None:
            if tell_peer:
                link.close()
            link.abort()


def datagrams(drivers) -> tuple[int, int]:
    """Datagrams all vehicles sent and received so far (gateway in, gateway out)."""
    links = [link for d in drivers for link in d.links]
    return (sum(link.datagrams_sent for link in links),
            sum(link.datagrams_received for link in links))
