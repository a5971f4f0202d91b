"""One simulated vehicle's uplink in the load generator: the agent's own decisions, a thin shell.

Every decision is the agent's `UplinkMachine` (agent/uplink_machine.py: connecting and the
reconnect backoff, live pacing and the stall rule, liveness probes, migration, acks); what the
next batch holds is the agent's drain order (`agent.journal_drain.plan_batch`, through the
vehicle's `MemoryJournal`). This shell does what agent/uplink.py does for the agent, with
callbacks instead of tasks, so thousands of vehicles share one event loop cheaply: no task,
future or loop timer per vehicle; the machine's deadline (`get_timer()`) is an entry in the
process's one timer heap (`ClientEdge.timers`), readings are made when it fires, and the QUIC
connection is an `EdgeLink` on the process's shared sockets (loadtest/edge.py).

The load test's modes act on it as the world would: `outage()` takes the radio away (the
connection is gone, connection attempts wait for the radio), `churn()` ends the connection,
`move()` gives the vehicle a new address (the machine migrates).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from agent.journal_drain import DrainState
from agent.quic_link import PROBE_RESEND_S, v6_address
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
from agent.version_probe import VersionProbe
from backend.edge_core import BUSY_REASON
from geostream.clock import wall_ms
from geostream.messages import Status
from geostream.quic_acks import ack_delay_for

from .edge import EdgeLink, _ago, _ahead
from .fleet import SimVehicle

if TYPE_CHECKING:
    from .client import Worker

# The agent's own bound (agent/uplink.py): a handshake that takes longer is a failed connect.
CONNECT_TIMEOUT_S = 10.0
# The journal's byte budget is the welcome's max_batch_bytes less this much for the batch's
# own framing (agent/uplink.py asks with the same margin).
BATCH_FRAMING_BYTES = 64
# A vehicle's own deadline this far past is a wake that never came (`stall_kind`): the
# edge's slot is 10 ms, a busy client process a second or two behind.
LATE_S = 5.0
# The status report's source states: every simulated vehicle has a healthy GPS and CAN bus.
SOURCES = (("gps", "ok"), ("can0", "ok"))


class Driver:
    """The I/O edge of one vehicle: carries out its `UplinkMachine`'s actions. An owner in the
    process's timer heap: `wake(now)` at the machine's deadline or the connect timeout."""

    def __init__(self, worker: Worker, sim: SimVehicle, server: tuple[str, int]):
        self.w = worker
        self.name = sim.vehicle_id  # in the edge's log (`ClientEdge.owner_failed`)
        self.clock = worker.edge.now  # the worker's clock (`Worker.now`), one call shorter
        self.sim = sim
        self.server = server
        self.machine = UplinkMachine(worker.send_interval_s, random=worker.rng.random)
        self.link: EdgeLink | None = None
        self.stream_id = 0
        self.drain: DrainState | None = None
        self.online = True           # the radio is up (storm: down during the outage)
        self._parked = False         # a Connect waits for the radio
        self._queued = False         # a Connect waits for a ramp slot
        self._slot = False           # holds a ramp slot (from its open to its welcome)
        self._connect_by: float | None = None  # the handshake's deadline
        self.welcomed = False        # welcomed once (the ramp waits for every vehicle)
        self.drain_target = 0        # storm: the backlog to drain after reconnecting
        self.drained_after: float | None = None
        self.reconnected_at = 0.0
        self._filed_at: float | None = None  # the deadline the edge's wheel holds for it
        # the TLS session ticket the gateway gave last (the agent's ticket file, in memory): a
        # reconnect resumes with it and sends its hello as 0-RTT, as the agent does
        self.ticket = None
        self.probe: _Probe | None = None  # the liveness probe under way (`describe`)

    # --- inputs --------------------------------------------------------------------------

    def start(self) -> None:
        self._do(self.machine.start(self.w.now()))
        self._after()

    def wake(self, now: float) -> None:
        """Its deadline came (the timer heap): the connect timeout, the machine's timer."""
        self._filed_at = None  # the wheel let it go
        if self._connect_by is not None and now >= self._connect_by:
            # closed, not dropped (as the agent's attempt): an Initial-level CONNECTION_CLOSE
            # ends the gateway's half-open connection now, not at its 60 s deadline
            self._connect_failed("connect: TimeoutError", "handshake timed out", tell_peer=True)
        elif actions := self.machine.handle_timer(now):
            self._do(actions)
        self._after()

    def _on_data(self, link: EdgeLink, data: bytes, end: bool) -> None:
        if link is not self.link:
            return  # from a connection that is gone
        m, now = self.machine, self.clock()
        before = m.state
        self._do(m.stream_data(now, data, end), now)
        if before is not State.CONNECTED and m.state is State.CONNECTED:
            self._release()
            self.w.connects += 1
            if not self.welcomed:
                self.welcomed = True
                self.w.welcomed += 1
        self._after(now)

    def _on_handshake(self, link: EdgeLink) -> None:
        if link is not self.link:
            return
        self._connect_by = None
        self._do(self.machine.handshake_done(self.w.now(), local_host=link.local_host,
                                             resumed=link.session_resumed,
                                             early_data_accepted=link.early_data_accepted,
                                             peer_ack_delay_s=link.lib.ack_delays(link.conn)[1]))
        self._after()

    def _closed(self, link: EdgeLink) -> None:
        if link is not self.link:
            return
        if self._connect_by is not None:  # during the handshake: a failed connect
            busy = link.close_reason.startswith(BUSY_REASON.decode())  # the gateway shed it
            self._connect_failed("connect: refused busy" if busy else "connect: ConnectionError",
                                 link.close_reason)
        else:
            self.w.error(f"closed: {link.close_reason[:60]}")
            self._do(self.machine.disconnected(self.w.now(),
                                               f"connection closed: {link.close_reason}"))
        self._after()

    # --- what the load test's modes do -------------------------------------------------

    def outage(self) -> None:
        """The radio is gone: nothing reaches the gateway (which is not told)."""
        self.online = False
        if self.link is not None:
            self._drop(tell_peer=False)
            self._do(self.machine.disconnected(self.w.now(), "outage"))
        self._after()

    def radio_back(self) -> None:
        """The radio is back: a connection attempt that waited for it goes now."""
        self.online = True
        if self._parked:
            self._parked = False
            self.w.request_connect(self)

    def churn(self) -> None:
        """The connection ends (the gateway is told); the machine reconnects after its backoff."""
        if self.link is not None:
            self.w.reconnects += 1
            self._drop(tell_peer=True)
            self._do(self.machine.disconnected(self.w.now(), "churn"))
            self._after()

    def move(self, local_host: str) -> None:
        """The route to the gateway now leaves from `local_host` (a new address)."""
        if self.link is not None:
            self._do(self.machine.route_seen(self.w.now(), local_host))
            self._after()

    def stop(self) -> None:
        """End of the run: close, and connect no more."""
        self.online = False
        self._parked = False
        self._filed_at = None
        self.w.edge.timers.set(self, None)
        if self.link is not None:
            self._drop(tell_peer=True)

    # --- actions -------------------------------------------------------------------------

    def _do(self, actions: list, now: float | None = None) -> None:
        """Carry out the machine's actions (`now`: the input's time, when it has just been
        read)."""
        for a in actions:
            kind = type(a)
            if kind is SendData:
                if self.link is not None:
                    self.link.send(self.stream_id, a.data)
            elif kind is ApplyAck:
                self._acked(a.ack.through, a.ack.ranges, self.clock() if now is None else now)
            elif kind is Connect:
                if self.online:
                    self.w.request_connect(self)
                elif not self.w.stopping:
                    self._parked = True
            elif kind is Ping:
                if self.link is not None:
                    self.link.ping()
            elif kind is Probe:
                _Probe(self, self.link)
            elif kind is Migrate:
                self._migrate(a.local_host)
            elif kind is Close:
                if self.link is not None:
                    self.link.close(a.code, a.reason)
                self._drop(tell_peer=False)
            elif kind is Abort:
                self._drop(tell_peer=False)

    def _after(self, now: float | None = None) -> None:
        """After every input, as the agent's loop: make what is due, fill, report, re-arm
        (`now`: the input's time, when it has just been read)."""
        m, sim = self.machine, self.sim
        if now is None:
            now = self.clock()
        sim.make_due(now)
        drain, link = self.drain, self.link
        session = m.session
        starved = False  # the machine would send, the journal has nothing: wake for a reading
        while (link is not None and drain is not None and session is not None
               and (room := m.room(now)) > 0):
            batch = sim.next_batch(drain, room, session.max_batch_bytes - BATCH_FRAMING_BYTES,
                                   now)
            if not batch.seqs:  # `EncodedReadings`' own length, without its __len__ call
                starved = True
                break
            self.w.batches += 1
            self._do(m.batch_sent(now, batch, drain.more))
        if link is not None and m.status_due(now):
            self._do(m.status_report(now, Status(
                time=wall_ms(), backlog=sim.journal.pending, journal_bytes=0, sources=SOURCES)))
        at = m.get_timer()
        if (also := self._connect_by) is not None and (at is None or also < at):
            at = also
        if starved and (also := sim.next_due()) is not None and (at is None or also < at):
            at = also
        edge = self.w.edge
        if at != self._filed_at:  # most inputs leave the deadline where it was
            self._filed_at = at
            edge.timers.set(self, at)
        if not edge.serving:  # else the edge's wakeup arms at its end
            edge.arm()

    def stall_kind(self, now: float) -> str:
        """What a vehicle left with readings pending waits for, in a few words (the report
        counts the vehicles not drained by it): its machine's state and liveness phase,
        whether readings are in flight (waiting for the gateway's ack) or none (not sending),
        and a deadline of its own that is overdue by more than LATE_S (a wake that never
        came) or missing."""
        m = self.machine
        words = [m.state.name]
        if m.state is State.CONNECTED:
            s = m.session
            words.append(f"liveness {m.liveness._phase.name}")
            words.append("readings in flight" if s is not None and s.in_flight
                         else "nothing in flight")
        at = self._filed_at
        if at is None and self.probe is None:
            words.append("no deadline")
        elif at is not None and at < now - LATE_S:
            words.append("deadline overdue")
        return ", ".join(words)

    def describe(self, now: float) -> str:
        """What a vehicle left with readings pending is waiting for (the load tester logs it
        for each vehicle not drained): its journal, the machine's state and deadlines, the
        session's credit and readings in flight, the liveness phase and silences, the QUIC
        connection's recovery state."""
        m, sim, link = self.machine, self.sim, self.link
        s, lv = m.session, m.liveness
        parts = [f"{sim.vehicle_id}: pending {sim.journal.pending}",
                 f"last ack {_ago(now, sim.last_ack_at)}", f"state {m.state.name}",
                 f"timer in {_ahead(now, m.get_timer())}",
                 f"filed in {_ahead(now, self._filed_at)}",
                 f"wheel in {_ahead(now, self.w.edge.timers.at(self))}",
                 f"connect by {_ahead(now, self._connect_by)}", f"online {self.online}",
                 f"parked {self._parked} queued {self._queued} slot {self._slot}"]
        if self.probe is not None:
            p = self.probe
            parts.append(f"probe wheel in {_ahead(now, self.w.edge.timers.at(p))} answered "
                         f"{p.answered} done {p.done} for this link {p.for_link is link}")
        if s is not None:
            parts.append(f"session ready {s.ready} credit {s.credit} in flight {len(s.in_flight)}")
        parts.append(f"liveness {lv._phase.name} heard {_ago(now, lv.heard)} "
                     f"answer {lv.answer_s:.1f} s deadline in {_ahead(now, lv.deadline)}")
        if link is not None:
            conn = link.conn
            core = getattr(conn, "_core", None)
            parts.append(f"link handshaken {link.handshaken} closed {link.closed} "
                         f"({link.close_reason or '-'}) timer in {_ahead(now, conn.get_timer())}")
            if core is not None:
                parts.append(f"quic pto {core.pto_count} in flight {core.bytes_in_flight} B "
                             f"srtt {core.smoothed_rtt} lost {core.loss_total}")
        return "; ".join(parts)

    def _acked(self, through: int, ranges, now: float) -> None:
        self.w.acked_now(self.sim.acknowledge(through, ranges, now), now)
        if (self.drained_after is None and self.drain_target
                and self.sim.journal.acked_through() >= self.drain_target):
            self.drained_after = now - self.reconnected_at

    def open(self) -> None:
        """The agent's connect sequence (agent/uplink.py `_open`), without name resolution
        or pinning: with the vehicle's session ticket once it has one (resumption and a 0-RTT
        hello, else a full handshake); called by the worker when a ramp slot is free."""
        self._queued = False
        self._slot = True
        if not self.online:  # the radio went while waiting for a turn
            self._parked = True
            self._release()
            return
        w, m, sim = self.w, self.machine, self.sim
        now = w.now()
        link = EdgeLink(w.edge, self.quic_configuration(), self.server,
                        on_stream_data=self._on_data, on_handshake=self._on_handshake,
                        on_closed=self._closed, ack_delay_s=ack_delay_for(m.send_interval_s),
                        session_ticket_handler=self._ticket_issued)
        link.on_datagram = m.datagram_received
        link.name = sim.vehicle_id
        link.on_ping = m.ping_sent
        self.link = link
        self._connect_by = now + CONNECT_TIMEOUT_S
        try:
            link.start(w.local_host)
        except OSError as exc:
            self._connect_failed(f"connect: {type(exc).__name__}", str(exc))
            self._after()
            return
        self.stream_id = link.conn.get_next_available_stream_id()
        acked_through = sim.journal.acked_through()
        self._do(m.connecting(now, vehicle=sim.vehicle_id, token=sim.token, epoch=sim.epoch,
                              acked_through=acked_through, agent="fleet-loadtest"))
        self.drain = DrainState(acked_through, epoch=sim.epoch)
        self._after()

    def quic_configuration(self):
        """The process's client configuration, with this vehicle's ticket if it has one."""
        cfg = self.w.quic_config
        return cfg if self.ticket is None else dataclasses.replace(cfg, session_ticket=self.ticket)

    def _ticket_issued(self, ticket) -> None:
        """The gateway issued a session ticket (each is good once): keep the newest."""
        self.ticket = ticket

    def _connect_failed(self, kind: str, detail: str, tell_peer: bool = False) -> None:
        """The handshake failed or timed out: the machine backs off and reconnects;
        `tell_peer`: the attempt is given up, not ended by the gateway (close it)."""
        self._connect_by = None
        self._release()
        self.w.error(kind)
        self._drop(tell_peer=tell_peer)
        self._do(self.machine.disconnected(self.w.now(), detail or kind))

    def _release(self) -> None:
        """Give back the ramp slot (welcomed, failed or dropped)."""
        if self._slot:
            self._slot = False
            self.w.slot_freed()

    def _migrate(self, local_host: str) -> None:
        link, m = self.link, self.machine
        if link is None:
            return
        try:
            link.migrate(local_host)
        except OSError:
            m.migrated(self.w.now(), None, link.migrations)
            return
        self.w.migrations += 1
        m.migrated(self.w.now(), local_host, link.migrations)

    def _drop(self, tell_peer: bool = True) -> None:
        self._connect_by = None
        self._release()
        link, self.link = self.link, None
        if link is not None:
            if tell_peer:
                link.close()
            link.abort()


class _Probe:
    """Does the gateway's process answer a new packet now? (agent/uplink.py `_probe`): the
    agent's Version Negotiation probe (agent/version_probe.py) from the vehicle's socket, sent
    again as the agent's is (agent/quic_link.py `probe_version`) and given up after the
    connect timeout; the answer goes to the vehicle's machine if its connection is still
    `link`. Its datagrams count as "probe" in the edge's stats."""

    def __init__(self, driver: Driver, link: EdgeLink | None):
        self.d, self.for_link = driver, link
        self.name = f"{driver.name} probe"
        w = driver.w
        self.done = False
        self.answered = False
        self.vn = VersionProbe()
        self._resend_s = PROBE_RESEND_S
        now = w.now()
        self._give_up_at = now + CONNECT_TIMEOUT_S
        driver.probe = self
        w.edge.route(self.vn.scid, self)  # the answer's DCID is the probe's SCID
        self._send(now)

    def _send(self, now: float) -> None:
        try:
            self.d.w.edge.send_raw(self.d.w.local_host, self.vn.datagram,
                                   v6_address(self.d.server), "sent_probe")
        except OSError:
            self._end(False)
            return
        at = min(now + self._resend_s, self._give_up_at)
        self._resend_s *= 2
        self.d.w.edge.timers.set(self, at)

    def datagram_received(self, data: bytes, addr, now: float) -> None:
        self.d.w.edge.stats["received_probe"] += 1
        if self.vn.answered_by(data):
            self.answered = True
            self._end(True)

    def wake(self, now: float) -> None:
        if now >= self._give_up_at:
            self._end(False)
        else:
            self._send(now)

    def _end(self, ok: bool) -> None:
        if self.done:
            return
        self.done = True
        d = self.d
        if d.probe is self:
            d.probe = None
        d.w.edge.timers.set(self, None)
        d.w.edge.unroute(self.vn.scid, self)
        if self.for_link is d.link:
            d._do(d.machine.probe_done(d.w.now(), ok))
            d._after()
