"""Who owns a vehicle: one gateway process per vehicle runs its clock-driven state (the stale
and offline alert rules), across a router cluster and the workers of `--reuseport`
(docs/scaling.md §4 "Who owns a vehicle").

- A process is a **member** while it renews its row in the store (`cluster_members`) every
  `RENEW_S`; it is dead `MEMBER_TTL_S` after its last renewal (kill -9, a lost database link)
  and gone at once when it stops cleanly.
- A **connected** vehicle is owned by the process holding its connection: the connection's
  registration claims the vehicle's row (`vehicle_owners`) within one store round trip; a
  claim loses only to a newer connection held elsewhere. A vehicle connected **nowhere** stays
  with its last owner while that one lives; the vehicles of a dead member, and vehicles never
  owned, are adopted by the first live member whose sync finds them (one UPDATE: the row lock
  makes a second adopter see the first and skip).
- Each sync (the alert timer's round) reports what this process owns and what it gained and
  lost; the engine drops a lost vehicle's state and resumes a gained one from the store (its
  newest reading, its open stale/offline alerts). Alerts are saved only for vehicles the store
  still says are ours, in the same transaction: a hand-over between a sync and its save
  leaves the vehicle to the new owner, so no vehicle is evaluated twice.
- The sync also repairs what a lost write left: a vehicle whose connection this process holds
  is claimed again, one it owns as connected but no longer holds is marked disconnected.

Hand-over time: a vehicle that reconnects elsewhere belongs to the new process as soon as its
claim commits (milliseconds after the handshake); the old one stops at its next sync, the new
one starts at its next (≤ `alert_timer_s` each). A killed owner's vehicles are adopted within
`MEMBER_TTL_S` + `alert_timer_s` of its death (15 s with the defaults: its last renewal was no
later than its death, and the next round of any live process adopts them); its connected
vehicles reconnect elsewhere sooner (the agent's stall rule) and are claimed directly.
Clocks: membership compares one process's wall clock with another's (NTP, as TLS needs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

# A member renews this often ...
RENEW_S = 2.0
# ... and is dead this long after its last renewal: five missed renewals, so a loaded machine
# or a database hiccup of a few seconds does not hand its vehicles over.
MEMBER_TTL_S = 10.0
# Connection changes waiting for the store are kept up to this many (a long database outage):
# beyond, the oldest are dropped; the next sync repairs what they would have written.
MAX_PENDING = 100_000


def node_name() -> str:
    """This process among the cluster's members: host and pid (a restarted process is a new
    member; its predecessor's vehicles are adopted like any dead member's)."""
    return f"{socket.gethostname()}/{os.getpid()}"


class OwnerBook:
    """The sans-IO part: this process's connection changes not yet stored, and what it owns.
    `owned`: vehicle → (connected, since_ms) as the last sync read it."""

    def __init__(self) -> None:
        self.owned: dict[str, tuple[bool, int]] = {}
        self.pending: list[tuple[str, bool, int]] = []
        self.connected_at: dict[str, int] = {}  # this process's connections, when they began

    def connected(self, vehicle: str, now_ms: int) -> None:
        self.connected_at[vehicle] = now_ms
        self._add((vehicle, True, now_ms))

    def disconnected(self, vehicle: str, now_ms: int) -> None:
        self.connected_at.pop(vehicle, None)
        self._add((vehicle, False, now_ms))

    def _add(self, change: tuple[str, bool, int]) -> None:
        self.pending.append(change)
        if len(self.pending) > MAX_PENDING:
            del self.pending[:len(self.pending) - MAX_PENDING]

    def take(self) -> list[tuple[str, bool, int]]:
        out, self.pending = self.pending, []
        return out

    def repairs(self, rows: dict[str, tuple[bool, int]], holding: Iterable[str],
                now_ms: int) -> list[tuple[str, bool, int]]:
        """Writes that make the store agree with this process's connections: claims for the
        vehicles it holds but does not own as connected, releases for those it owns as
        connected but does not hold."""
        held = set(holding)
        out = [(v, True, self.connected_at.get(v, now_ms)) for v in sorted(held)
               if not rows.get(v, (False, 0))[0]]
        out += [(v, False, now_ms) for v, (c, _) in sorted(rows.items()) if c and v not in held]
        return out

    def update(self, rows: dict[str, tuple[bool, int]]) -> tuple[set[str], set[str]]:
        """The store's rows of this process → (gained, lost) since the previous sync."""
        gained, lost = rows.keys() - self.owned.keys(), self.owned.keys() - rows.keys()
        self.owned = dict(rows)
        return set(gained), set(lost)


class VehicleOwners:
    """The async edge: membership renewal, connection changes to the store, the sync."""

    def __init__(self, store, node: str | None = None, ttl_s: float = MEMBER_TTL_S,
                 renew_s: float = RENEW_S, clock=None):
        from geostream.clock import wall_ms

        self.store = store
        self.node = node or node_name()
        self.ttl_ms, self.renew_s = int(ttl_s * 1000), renew_s
        self.clock = clock or wall_ms
        self.book = OwnerBook()
        self.stats = {"claims": 0, "releases": 0, "gained": 0, "lost": 0, "failures": 0}
        self._lock = asyncio.Lock()  # one writer of this process's rows at a time, in order
        self._flusher: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None

    async def start(self) -> None:
        await self.store.renew_member(self.node, self.clock(), self.ttl_ms)
        self._renewer = asyncio.get_running_loop().create_task(self._renew(),
                                                               name="owner-renewal")

    async def stop(self) -> None:
        """Write what is pending, then leave: the others adopt this process's vehicles."""
        if self._renewer is not None:
            self._renewer.cancel()
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            await self.flush()
            await self.store.leave_member(self.node, self.clock())
        except Exception as exc:  # its membership expires on its own
            log.warning("cannot leave the cluster's members: %s", exc)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.store.renew_member(self.node, self.clock(), self.ttl_ms)
            except Exception as exc:  # the next renewal tries again
                self.stats["failures"] += 1
                log.warning("cannot renew cluster membership of %s: %s", self.node, exc)

    # --- connections (the gateway's register / unregister) ----------------------------

    def connected(self, vehicle: str) -> None:
        self.book.connected(vehicle, self.clock())
        self._kick()

    def disconnected(self, vehicle: str) -> None:
        self.book.disconnected(vehicle, self.clock())
        self._kick()

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(),
                                                                   name="owner-claims")

    async def _flush(self) -> None:
        while self.book.pending:
            try:
                await self.flush()
            except Exception as exc:  # the next sync repairs it
                self.stats["failures"] += 1
                log.warning("cannot record vehicle connections: %s", exc)
                return

    async def flush(self) -> None:
        """Write the pending connection changes; returns once every change noted before the
        call is in the store (taken under the lock: none is in flight elsewhere)."""
        async with self._lock:
            await self._record(self.book.take())

    async def _write(self, changes: Sequence[tuple[str, bool, int]]) -> None:
        async with self._lock:
            await self._record(changes)

    async def _record(self, changes: Sequence[tuple[str, bool, int]]) -> None:
        if not changes:
            return
        await self.store.record_connections(self.node, changes)
        claims = sum(1 for _, c, _ in changes if c)
        self.stats["claims"] += claims
        self.stats["releases"] += len(changes) - claims

    # --- the sync (the alert timer) --------------------------------------------------

    async def sync(self, now_ms: int, holding: Iterable[str]
                   ) -> tuple[dict[str, tuple[bool, int]], set[str], set[str]]:
        """Adopt orphans, read this process's vehicles, repair disagreements with its own
        connections → (owned: vehicle → (connected, since_ms), gained, lost). Raises when
        the store is away (the caller evaluates nothing this round)."""
        # a process that syncs is alive: renewed here too, so it never repairs (claims) as a
        # member the others may take for dead
        await self.store.renew_member(self.node, now_ms, self.ttl_ms)
        await self.flush()
        rows = await self.store.owned_vehicles(self.node, now_ms)
        repairs = self.book.repairs(rows, holding, now_ms)
        if repairs:
            await self._write(repairs)
            for v, connected, at in repairs:
                if not connected:
                    rows[v] = (False, at)
                # a claim takes effect at the next sync (it may lose to a newer connection)
        gained, lost = self.book.update(rows)
        self.stats["gained"] += len(gained)
        self.stats["lost"] += len(lost)
        return rows, gained, lost

    async def save(self, changes: list, now_ms: int) -> list:
        return await self.store.save_owned_alerts(self.node, changes, now_ms)
