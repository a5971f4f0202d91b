"""The uplink's policy as a pure state machine (sans-IO, in the manner of aioquic's
`QuicConnection`): when to connect and reconnect, pacing and the stall rule, liveness and
suspend probing, migration on a route change, acks and downlink commands.

Every input takes `now` (the monotonic clock, seconds) and returns a list of actions for the
I/O shell (`agent.uplink.Uplink`) to carry out in order; `get_timer()` is the next deadline,
at which the shell calls `handle_timer(now)`. The geostream session (`ClientSession`) lives
inside; the QUIC connection, the journal and the clock stay outside.

Over 300 lines because it is the one place that holds the link's state: splitting the
reconnect, pacing and command parts apart would spread one state machine over modules that
each need all of its state (liveness, which needs none of it, is agent/liveness.py).
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Callable

from geostream.backoff import Backoff
from geostream.clock import wall_ms
from geostream.codec import EncodedReadings
from geostream.errors import ErrorCode
from geostream.limits import SEND_BATCH_READINGS, STALL_S
from geostream.messages import Status
from geostream.session import (
    Acknowledged,
    ClientSession,
    CommandReceived,
    Failed,
    PeerError,
    Welcomed,
)

from .commands import CommandDispatcher
from .liveness import Liveness
from .statelog import StateLog
from .uplink_actions import (
    Abort,
    ApplyAck,
    Close,
    Connect,
    Migrate,
    RunCommand,
    SendData,
    UplinkStats,
)

log = logging.getLogger("agent.uplink")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
# each reconnect delay is drawn from [d/2, d], so a fleet that lost the backend together does
# not come back in step
BACKOFF_JITTER = 0.5
# after auth-failed/revoked, retry slowly: an operator may re-provision the vehicle
AUTH_BACKOFF_S = 60.0
# How often the agent reports its status to the backend (docs/protocol.md §3 status; ~100
# bytes each); [status] report_interval_s overrides it.
STATUS_INTERVAL_S = 30.0
# What this agent does beyond revision 1 (docs/protocol.md §10): it sends driver actions
# ("act") and arrivals/departures detected on the vehicle ("stops", revision 3).
FEATURES = ("act", "stops", "images")
# asyncio may fire a timer up to its clock resolution early
_EARLY_S = 1e-3
# Live pacing with a batch in flight (docs/link.md, "Live pacing"): the next live batch waits
# for its ack, at most this many send intervals after it. A gateway that is behind answers
# late; readings that gather meanwhile go in one batch instead of one each (one datagram in
# and one `ack` out per batch, whatever it holds), so a slow gateway costs less per reading
# instead of more. A healthy link's ack comes within an interval and changes nothing; one
# that takes longer than this bound (a lost `ack`, repaired at the gateway's probe timeout
# ~1.5 intervals later, or a very long path) lets the next batch go anyway.
HOLD_FOR_ACK_INTERVALS = 3.0


class State(enum.Enum):
    DISCONNECTED = "disconnected"  # waiting out the reconnect backoff
    CONNECTING = "connecting"  # handshake and hello under way, no welcome yet
    CONNECTED = "connected"  # welcomed: batches flow
    REFUSED = "refused"  # auth-failed or revoked: waiting AUTH_BACKOFF_S


class UplinkMachine:
    """One agent's link to the gateway, as state and deadlines."""

    def __init__(self, send_interval_s: float, *, commands: CommandDispatcher | None = None,
                 backoff: Backoff | None = None, wall_ms: Callable[[], int] = wall_ms,
                 random: Callable[[], float] | None = None) -> None:
        self.send_interval_s = send_interval_s
        self.commands = commands or CommandDispatcher()
        extra = {} if random is None else {"random": random}
        self.backoff = backoff or Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S, jitter=BACKOFF_JITTER,
                                          **extra)
        self._refused_backoff = Backoff(AUTH_BACKOFF_S, AUTH_BACKOFF_S, jitter=BACKOFF_JITTER,
                                        **extra)
        self._wall_ms = wall_ms
        self.stats = UplinkStats()
        self._state = StateLog(log, "uplink", State.DISCONNECTED.value,
                               warn={State.DISCONNECTED.value, State.REFUSED.value},
                               detail_changes=True)
        self.state = State.DISCONNECTED
        self.session: ClientSession | None = None
        self._answered: OrderedDict = OrderedDict()  # command answers, across sessions
        self.last_failure = ""  # the last error, kept after a reconnect (status())
        self.local_host: str | None = None  # the connection's local address
        self._linked = False  # a handshake completed on the current connection
        self._migrating = False
        self._started = 0.0
        self._reconnect_at: float | None = None
        # pacing: when the last batch went, whether it was a live one, a pending deadline
        self._last_send = -1e9
        self._live = False
        self._pace_at: float | None = None
        # status reports (docs/protocol.md §3 status): every interval, unless the gateway
        # answered unknown-type (an older gateway: none on this session)
        self.status_interval_s = STATUS_INTERVAL_S
        self._next_status = 0.0
        self._status_refused = False
        self.liveness = Liveness()

    # --- the link ----------------------------------------------------------------------

    def start(self, now: float) -> list:
        """Begin: connect at once."""
        return self._connect(now)

    def connecting(self, now: float, *, vehicle: str, token: str, epoch: int,
                   acked_through: int, agent: str, early: bool = True) -> list:
        """A connection's first flight went out. `early`: send the hello now (as 0-RTT when a
        ticket was offered); else it waits for `handshake_done` (key pinning)."""
        self.session = ClientSession(vehicle, token, epoch, acked_through, agent=agent,
                                     commands=self.commands.advertised, features=FEATURES)
        self.session.remember_answers(self._answered)
        self._set(State.CONNECTING)
        self._started = now
        self.liveness.reset(now)
        self._live = False  # a new session sends its backlog at once
        self._linked = False
        self._early = early
        return [SendData(self.session.data_to_send())] if early else []

    def handshake_done(self, now: float, *, local_host: str, resumed: bool = False,
                       early_data_accepted: bool = False, boot: float | None = None,
                       peer_ack_delay_s: float | None = None) -> list:
        """The QUIC handshake completed (and the key pin, if any, matched); `peer_ack_delay_s`:
        the gateway's max_ack_delay (its transport parameter), when the library tells it."""
        self.stats.connects += 1
        self.stats.extra["session_resumed"] = resumed
        self.stats.extra["early_data_accepted"] = early_data_accepted
        self.local_host = local_host
        self._linked = True
        self.liveness.start(now, boot, peer_ack_delay_s)
        return [] if self._early else [SendData(self.session.data_to_send())]

    def disconnected(self, now: float, error: str) -> list:
        """The connection failed or closed (or never opened); reconnect after the backoff."""
        if self.state in (State.DISCONNECTED, State.REFUSED):
            return []
        self._end()
        self._set(State.DISCONNECTED, error)
        self._reconnect_at = now + self.backoff.next()
        return [Abort()]

    def stream_data(self, now: float, data: bytes, end: bool = False) -> list:
        """Bytes on the session stream."""
        if self.session is None:
            return []
        actions: list = []
        for event in self.session.receive(data):
            if isinstance(event, Acknowledged):  # the usual event: tested first
                self.stats.readings_acked += event.newly_acked
                self.stats.last_ack_monotonic = now
                actions.append(ApplyAck(event))
            elif isinstance(event, Welcomed):
                self._set(State.CONNECTED)
                self.backoff.reset()
                self._next_status, self._status_refused = 0.0, False  # report once at once
                # first packet → welcome: what a (re)connect costs before data flows
                self.stats.extra["welcome_after_s"] = now - self._started
                self.stats.extra["welcomes"] = self.stats.extra.get("welcomes", 0) + 1
                self.stats.server_clock_offset_ms = self._wall_ms() - event.server_time_ms
            elif isinstance(event, CommandReceived):
                if self.commands.runner is not None:  # the daemon's: recorded, maybe slow
                    actions.append(RunCommand(event.command))
                    continue
                ok, detail = self.commands.answer(event.command)
                self.session.acknowledge_command(event.command.id, ok, detail)
            elif isinstance(event, PeerError):
                if event.code == ErrorCode.UNKNOWN_TYPE:  # an older gateway: no status reports
                    self._status_refused = True
                log.warning("server error %d: %s", event.code, event.reason)
                if event.code in (ErrorCode.AUTH_FAILED, ErrorCode.REVOKED):
                    return actions + self._refused(now, f"{ErrorCode(event.code).label}: "
                                                        f"{event.reason}")
            elif isinstance(event, Failed):
                actions.append(SendData(self.session.data_to_send()))
                code, reason = self.session.close_expected() or (event.code, event.reason)
                return actions + self._drop(now, f"{ErrorCode(event.code).label}: {reason}",
                                            Close(code, reason))
        if data := self.session.data_to_send():  # an ack alone answers nothing
            actions.append(SendData(data))
        if end or self.session.closed:
            return actions + self._drop(now, "server ended the session", Close())
        return actions

    def command_answered(self, now: float, command_id: int, ok: bool, detail: str,
                         result: dict | None = None) -> list:
        """A command run by the shell has its answer: sent on the session open now (a
        command answered while none is open is answered again from the record when the
        gateway re-sends it after the next welcome)."""
        s = self.session
        if s is None or self.state is not State.CONNECTED or s.closed:
            return []
        s.acknowledge_command(command_id, ok, detail, result)
        return [SendData(s.data_to_send())]

    # --- sending -----------------------------------------------------------------------

    def room(self, now: float) -> int:
        """How many readings the next batch may hold now (0: send nothing now)."""
        s = self.session
        if s is None or self.state is not State.CONNECTED:
            return 0
        in_flight = s.in_flight
        if (room := s.credit - len(in_flight)) <= 0 or not s.ready:
            return 0
        # (asked 3 times per batch: the liveness silence, max and min written out)
        if in_flight and now - self.liveness.heard > STALL_S:
            return 0  # stall rule (docs/protocol.md §1): keep the window for keepalives
        if self._live:  # live pacing: one batch per send interval once caught up,
            due = self._last_send + self.send_interval_s
            if in_flight:  # ... and after the ack of the one in flight (bounded)
                held = self._last_send + HOLD_FOR_ACK_INTERVALS * self.send_interval_s
                if held > due:
                    due = held
            if due > now:
                self._pace_at = due
                self.liveness.align(due)  # one wakeup for the pacing and the liveness tick
                return 0
        return room if room < SEND_BATCH_READINGS else SEND_BATCH_READINGS

    def batch_sent(self, now: float, readings: list[dict] | EncodedReadings,
                   more: bool) -> list:
        """Queue one batch (from `room()`: its reading maps, or them already encoded);
        `more`: the journal has a backlog behind it."""
        self.session.send_batch(readings)
        self._last_send = now
        self._live = not more  # caught up: what comes next is live
        self.stats.batches_sent += 1
        self.stats.readings_sent += len(readings)
        return [SendData(self.session.data_to_send())]

    def status_due(self, now: float) -> bool:
        """Whether a status report should go now (then the next one is an interval away)."""
        s = self.session
        if (s is None or self.state is not State.CONNECTED or self._status_refused
                or now < self._next_status):
            return False
        self._next_status = now + self.status_interval_s
        return True

    def status_report(self, now: float, report: Status) -> list:
        if self.session is None or self.state is not State.CONNECTED:
            return []
        self.session.send_status(report)
        return [SendData(self.session.data_to_send())]

    # --- the path ----------------------------------------------------------------------

    def datagram_received(self, now: float) -> None:
        self.liveness.datagram(now, bool(self.session and self.session.in_flight))

    def ping_sent(self, now: float) -> None:
        self.liveness.ping_sent(now)

    def route_seen(self, now: float, local_host: str) -> list:
        """The kernel now reaches the gateway from `local_host`."""
        if not self._linked or self._migrating or local_host == self.local_host:
            return []
        self._migrating = True
        return [Migrate(local_host)]

    def migrated(self, now: float, local_host: str | None, migrations: int) -> list:
        """The connection moved (or, with local_host None, the move failed)."""
        self._migrating = False
        if local_host is not None:
            self.local_host = local_host
            self.stats.extra["migrations"] = migrations
            self._live = False  # what waits goes at once: the new path is confirmed by data
        return []

    # --- liveness ----------------------------------------------------------------------

    def probe_done(self, now: float, reachable: bool) -> list:
        """The liveness probe (a `Probe`) was (`reachable`) or was not answered."""
        return self.liveness.probe_done(now, reachable)

    # --- timers ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline (monotonic seconds), or None."""
        at = self._reconnect_at
        if (t := self._pace_at) is not None and (at is None or t < at):
            at = t
        if (t := self.liveness.deadline) is not None and (at is None or t < at):
            at = t
        return at

    def handle_timer(self, now: float, boot: float | None = None) -> list:
        """Deadlines due at `now`; `boot`: CLOCK_BOOTTIME now, if known (suspend detection)."""
        if boot is not None:
            self.liveness.clock(now, boot)
        due = now + _EARLY_S
        actions: list = []
        if self._pace_at is not None and self._pace_at <= due:
            self._pace_at = None  # the shell fills after every input
        live = self.liveness
        if live.deadline is not None and live.deadline <= due:
            s = self.session
            actions = live.on_timer(now, s is not None and bool(s.in_flight))  # a new list
            if live.dead:
                self.stats.extra["dead_connections"] = (
                    self.stats.extra.get("dead_connections", 0) + 1)
                return actions + self._drop(now, "connection closed: aborted", Abort())
        if self._reconnect_at is not None and self._reconnect_at <= due:
            actions += self._connect(now)
        return actions

    # --- status ------------------------------------------------------------------------

    def status(self, now: float) -> dict:
        s = self.stats
        return {
            "state": self.state.value,
            "local_address": self.local_host if self._linked else None,
            "last_ack_age_s": None if s.last_ack_monotonic is None
            else round(now - s.last_ack_monotonic, 1),
            "last_error": self.last_failure,
            "in_flight": len(self.session.in_flight) if self.session else 0,
            "credit": self.session.credit if self.session else 0,
            "connects": s.connects, "batches_sent": s.batches_sent,
            "readings_sent": s.readings_sent, "readings_acked": s.readings_acked,
            "server_clock_offset_ms": s.server_clock_offset_ms, **s.extra,
        }

    # --- internals ---------------------------------------------------------------------

    def _connect(self, now: float) -> list:
        self._reconnect_at = None
        self._set(State.CONNECTING)
        return [Connect()]

    def _refused(self, now: float, error: str) -> list:
        self._end()
        self._set(State.REFUSED, error)
        self._reconnect_at = now + self._refused_backoff.next()
        return [Close()]

    def _drop(self, now: float, error: str, how) -> list:
        self._end()
        self._set(State.DISCONNECTED, error)
        self._reconnect_at = now + self.backoff.next()
        return [how]

    def _end(self) -> None:
        self._linked = self._migrating = False
        self._pace_at = None
        self.liveness.stop()

    def _set(self, state: State, error: str = "") -> None:
        self.state = state
        self._state.set(state.value, error)
        self.stats.state = state.value
        self.stats.last_error = error
        if error:
            self.last_failure = error
