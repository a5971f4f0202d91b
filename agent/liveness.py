"""Liveness and suspend probing of the uplink's connection (docs/protocol.md §8), pure.

A gateway restarted after kill -9 silently ignores packets of the connection it forgot, which
looks like a dead zone; so does one that dropped us while the vehicle's computer was suspended.
When the gateway has been silent with data or a PING unanswered, or a suspend is detected, the
agent probes the gateway's process (`Probe`: a QUIC version negotiation, agent/version_probe.py,
no handshake): if it answers while the old connection still hears nothing, the old one is gone
(`dead`) and the agent reconnects at once. Only the probe's transport is the I/O edge's; the
verdict is here.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

log = logging.getLogger("agent.uplink")

# silence (with data or a PING outstanding) that makes the agent probe
PROBE_AFTER_S = 8.0
# ... or this many times as long as the gateway took to answer last (the silence before the
# latest datagram that came while something was outstanding), if longer: a gateway that is
# behind answers seconds late, and a silence as long as its answers is no sign that it forgot
# the connection; probing it anyway (a handshake per vehicle then, before revision 6) made the
# load tester's vehicles send 0.4-1.4 probe datagrams per acked reading to a starved gateway
# (docs/benchmarks.md "Past the knee")
PROBE_PER_ANSWER = 2.0
# ... but never longer than this: a slow gateway that was then restarted is still found
PROBE_AFTER_MAX_S = 60.0
# after a probe that found the connection alive, wait this long before the next one
PROBE_EVERY_S = 15.0
# The tick; a tick SUSPEND_S late, or boot time running SUSPEND_S ahead of the monotonic clock
# (which stands still during system suspend), means the agent was suspended or stopped: it
# checks the connection at once, so it is back in < 2 s after resume (issue 7).
TICK_S = 1.0
SUSPEND_S = 2.0
# A tick may move to another deadline of the link's (the pacing of the next live batch, in
# `align`) that comes before it, or at most this long after it, so that one wakeup serves
# both: the ticks of a link that sends every second otherwise fall at their own phase, and
# each costs a wakeup of its own (the load tester's vehicles woke 1.9 times per second instead
# of once). A tick is never more than this late, well within SUSPEND_S.
TICK_ALIGN_LATE_S = 0.25
# Time the old connection gets to answer a last PING once the probe was answered; it is
# dead only if nothing at all came on it since the probe began (any datagram on it shows the
# gateway still has it: a restarted one sends nothing there).
GRACE_S = 1.0
# ... after a suspend or stall (the old connection is most likely gone: back in < 2 s, issue 7)
GRACE_AFTER_SUSPEND_S = 0.1
# ... plus (except after a suspend) this many times what the probe took: a gateway that is
# behind answers the old connection's PING as late as it answered the probe (a round trip
# through the same queue); with only GRACE_S, a busy gateway's vehicles all took it for
# dead and reconnected together (the load tester saw 899 such reconnects in 20 s at 20,000
# vehicles), which made it busier
GRACE_PER_PROBE_RTT = 2.0
# ... plus the gateway's max_ack_delay (its transport parameter; this until the handshake
# told it): the ACK of a PING may wait that long by design (RFC 9000 §13.2.1; the gateway
# holds it 400 ms for a commit's `ack` to carry, docs/protocol.md §1), while the probe's
# answer leaves at once (after a suspend: 0.1 + 0.4 s, the 0.5 s it always was, for
# a gateway that holds its ACKs longer as long as it does).
PEER_ACK_DELAY_S = 0.4
# ... and (except after a suspend) at least PROBE_PER_ANSWER times as long as the connection's
# latest answer took (`answer_s`), at most PROBE_AFTER_MAX_S: a gateway past its knee may answer
# the probe at once but its connections' data and PINGs from queues seconds long (the load
# tester saw answers 10-16 s after the data, and the PING's 15 s after it, with the probe, a
# handshake then, done in 0.5-1.7 s).


@dataclass(frozen=True, slots=True)
class Ping:
    """An ack-eliciting PING on the connection."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask whether the gateway's process answers a new packet (docs/protocol.md §8, the
    probe); report with `probe_done()`."""


class _Phase(enum.Enum):
    OFF = 0
    TICK = 1  # ticking every TICK_S
    PROBING = 2  # the probe is under way
    GRACE = 3  # the old connection has its grace to answer a last PING
    HOLDOFF = 4  # PROBE_EVERY_S before the next probe


class Liveness:
    def __init__(self) -> None:
        self.heard = 0.0  # when the last datagram came
        self.answer_s = 0.0  # the silence before the latest datagram while one was awaited
        self.dead = False  # the connection is gone: reconnect
        self.deadline: float | None = None
        self._ping_since: float | None = None  # oldest PING sent since the last datagram
        self._phase = _Phase.OFF
        self._tick_at = 0.0
        self._tick_due = 0.0  # when the next tick is due (its `deadline` unless aligned)
        self._tick_offset: float | None = None  # boot − monotonic at the last tick
        self._offset: float | None = None  # boot − monotonic, latest known
        self._resumed = False
        self._probe_at = 0.0  # when the probe began
        self._grace_s = GRACE_S  # the old connection's time to answer, once the probe is done
        self._peer_ack_delay_s = PEER_ACK_DELAY_S  # the gateway's max_ack_delay

    def reset(self, now: float) -> None:
        """A new connection: nothing heard yet, nothing outstanding, no ticking."""
        self.heard, self._ping_since, self.dead = now, None, False
        self.answer_s = 0.0
        self.stop()

    def start(self, now: float, boot: float | None = None,
              peer_ack_delay_s: float | None = None) -> None:
        """The connection is up: tick. `peer_ack_delay_s`: the gateway's max_ack_delay, when
        its transport parameters are known."""
        self.clock(now, boot)
        if peer_ack_delay_s is not None:
            self._peer_ack_delay_s = peer_ack_delay_s
        self._tick(now)

    def stop(self) -> None:
        self._phase, self.deadline = _Phase.OFF, None

    def clock(self, now: float, boot: float | None) -> None:
        """CLOCK_BOOTTIME at `now`, when known."""
        if boot is not None:
            self._offset = boot - now

    def datagram(self, now: float, awaited: bool = False) -> None:
        """A datagram came; `awaited`: data or a PING was outstanding (an answer)."""
        if awaited or self._ping_since is not None:
            self.answer_s = now - self.heard
        self.heard, self._ping_since = now, None

    def probe_after(self) -> float:
        """The silence with something outstanding after which the agent probes."""
        return min(PROBE_AFTER_MAX_S, max(PROBE_AFTER_S, PROBE_PER_ANSWER * self.answer_s))

    def ping_sent(self, now: float) -> None:
        if self._ping_since is None:
            self._ping_since = now

    def on_timer(self, now: float, in_flight: bool) -> list:
        """The deadline passed; returns actions (Ping, Probe), or sets `dead`."""
        self.deadline = None
        if self._phase is _Phase.TICK:
            late = now - self._tick_at > TICK_S + SUSPEND_S
            ahead = (self._offset is not None and self._tick_offset is not None
                     and self._offset - self._tick_offset > SUSPEND_S)
            self._tick_at, self._tick_offset = now, self._offset
            # nothing outstanding (the usual tick of a link whose batch was acked): not
            # silent, without working out how long a silence would have to be
            silent = (self._ping_since is not None or in_flight) and self._silent(now,
                                                                                   in_flight)
            actions: list = []
            if late or ahead:
                log.info("suspend or stall detected: checking the connection now")
                actions.append(Ping())
            elif not silent:
                self.deadline = self._tick_due = now + TICK_S
                return []
            self._resumed = late or ahead
            self._phase, self._probe_at = _Phase.PROBING, now
            return actions + [Probe()]
        if self._phase is _Phase.GRACE:
            # nothing at all since the probe began, not "silent for the grace at the time this
            # timer runs", which a process behind runs seconds late (the load tester's vehicles
            # aborted connections that had answered 1 s after the PING, 3 s before); after a
            # suspend or stop, what waited in the socket meanwhile came after the probe began
            # and proves nothing: silent for the grace then
            if (now - self.heard > self._grace_s if self._resumed
                    else self.heard < self._probe_at):
                log.warning("gateway answers new packets but not this connection "
                            "(restarted, or dropped it during a suspend): reconnecting")
                self.dead = True
                self.stop()
                return []
            self._probe_over(now)
        elif self._phase is _Phase.HOLDOFF:
            self._tick(now)
        return []

    def _silent(self, now: float, in_flight: bool) -> bool:
        """A PING, or data in flight, has waited longer than `probe_after()`."""
        after = self.probe_after()
        return ((self._ping_since is not None and now - self._ping_since > after)
                or (in_flight and now - self.heard > after))

    def probe_done(self, now: float, reachable: bool) -> list:
        """The probe was (`reachable`) or was not answered."""
        if self._phase is not _Phase.PROBING:
            return []
        if self._resumed:  # back in < 2 s (issue 7): its PING left as the probe began
            grace = GRACE_AFTER_SUSPEND_S + self._peer_ack_delay_s
        else:  # and as long as this connection's own answers took lately
            grace = max(GRACE_S + self._peer_ack_delay_s
                        + GRACE_PER_PROBE_RTT * max(0.0, now - self._probe_at),
                        min(PROBE_AFTER_MAX_S, PROBE_PER_ANSWER * self.answer_s))
        self._grace_s = grace
        # after a suspend only the grace's end decides (nothing heard within the grace before
        # it): what was read as the agent resumed (it waited in the socket) may come just
        # before the probe's answer, which on a near gateway takes a millisecond, and taken
        # for life here it sent the agent back to ticking, the next probe PROBE_AFTER_S later
        if reachable and (self._resumed or (now - self.heard > grace
                                            and self.heard < self._probe_at)):
            self._phase, self.deadline = _Phase.GRACE, now + self._grace_s
            return [Ping()]  # one last chance for the old connection
        self._probe_over(now)
        return []

    def _probe_over(self, now: float) -> None:
        if self._resumed:
            self._tick(now)
        else:
            self._phase, self.deadline = _Phase.HOLDOFF, now + PROBE_EVERY_S

    def _tick(self, now: float) -> None:
        self._phase, self.deadline = _Phase.TICK, now + TICK_S
        self._tick_due = self.deadline
        self._tick_at, self._tick_offset = now, self._offset

    def align(self, at: float) -> None:
        """Another deadline of the link's is at `at`: while ticking, the next tick goes then if
        that is before it is due or at most TICK_ALIGN_LATE_S after, else when due."""
        if self._phase is _Phase.TICK:
            self.deadline = at if at <= self._tick_due + TICK_ALIGN_LATE_S else self._tick_due
