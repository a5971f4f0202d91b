"""config.set's automatic rollback (docs/protocol.md §3, "Configuration rollback") as a pure
state machine, and its durable record.

`RollbackWatch` is fed the agent's running time and what the link does; it says when to probe
the gateway with the previous configuration and, from the probe, whether the change broke the
link (roll back) or the vehicle is in a tunnel (wait another window). Running time, not the
clock: a power cut or a wrong clock neither uses up nor extends the window. The record
(`save`/`load`) lives in the journal file's `agent_state` table, so it survives power cuts.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass

STATE_KEY = "config_rollback"
# Persist the running count at most this often while a change is unconfirmed: a power cut
# loses at most this much of the window (the window only grows, never shrinks, by it).
SAVE_EVERY_S = 10.0

KEEP, PROBE, ROLL_BACK, WAIT = "keep", "probe", "roll-back", "wait"


@dataclass
class PendingChange:
    """An unconfirmed configuration change."""

    command_id: int
    previous_text: str  # the file before the change
    confirm_s: float  # the window of running time
    run_s: float = 0.0  # running time since the change (or since the last tunnel verdict)
    windows: int = 0  # windows that ended in a tunnel verdict


class RollbackWatch:
    """What to do about an unconfirmed change. `now` is the agent's monotonic clock."""

    def __init__(self, pending: PendingChange | None, now: float):
        self.pending = pending
        self._last = now
        self._probing = False

    def tick(self, now: float) -> str | None:
        """Count running time; PROBE when the window is used up unconfirmed."""
        p = self.pending
        elapsed, self._last = max(0.0, now - self._last), now
        if p is None or self._probing:
            return None
        p.run_s += elapsed
        if p.run_s >= p.confirm_s:
            self._probing = True
            return PROBE
        return None

    def reached_backend(self) -> str | None:
        """A welcome (or an ack after a reload that kept the connection) under the new
        configuration: KEEP, and the watch ends (a tunnel afterwards changes nothing)."""
        if self.pending is None:
            return None
        self.pending, self._probing = None, False
        return KEEP

    def probe_done(self, previous_reaches: bool, now: float) -> str | None:
        """The previous configuration's server answered a handshake (the change broke the
        link: ROLL_BACK) or did not either (a tunnel: WAIT another window)."""
        p = self.pending
        if p is None or not self._probing:
            return None
        self._probing = False
        self._last = now
        if previous_reaches:
            self.pending = None
            return ROLL_BACK
        p.run_s, p.windows = 0.0, p.windows + 1
        return WAIT


def save(db: sqlite3.Connection, pending: PendingChange | None) -> None:
    if pending is None:
        db.execute("DELETE FROM agent_state WHERE key=?", (STATE_KEY,))
    else:
        db.execute("INSERT INTO agent_state (key, value) VALUES (?, ?) ON CONFLICT (key) "
                   "DO UPDATE SET value=excluded.value", (STATE_KEY, json.dumps(asdict(pending))))


def load(db: sqlite3.Connection) -> PendingChange | None:
    row = db.execute("SELECT value FROM agent_state WHERE key=?", (STATE_KEY,)).fetchone()
    return None if row is None else PendingChange(**json.loads(row[0]))
