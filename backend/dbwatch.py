"""The database's replication, watched (docs/operations.md, "A synchronous standby").

`ReplicationWatch` is the pure part: fed the PostgreSQL store's `replication()` snapshots, it
says whether acknowledged readings are on more than one server. Two alarms:
- `async`: the primary had a synchronous standby and now has none, and commits no longer
  wait (Patroni's non-strict `synchronous_mode` emptied `synchronous_standby_names` when the
  standby went away, so the fleet is not stalled): an acknowledged reading lives only on the
  primary until a standby is back;
- `stalled`: `synchronous_standby_names` names standbys but none is connected: every commit
  waits (strict mode, or a manager that has not reacted yet), and so does every ack.
A server that never had a standby (one PostgreSQL, by choice) raises nothing.
"""

from __future__ import annotations

# How often the backend asks the database (one small query): a fall-back to asynchronous
# replication is reported within this, about one Patroni loop at its default of 10 s.
CHECK_EVERY_S = 10.0


class ReplicationWatch:
    def __init__(self) -> None:
        self.state: dict | None = None
        self.alarm: str | None = None
        self.ever_sync = False
        self.failures = 0

    def observe(self, state: dict) -> str | None:
        """Take a snapshot; returns a message to log when the alarm changed."""
        self.state = state
        if not state.get("primary"):
            alarm = None  # a standby answering (a read pool): the primary's watch decides
        elif state["synchronous_standby_names"] and not state["sync_standbys"]:
            alarm = "stalled"
        elif state["sync_standbys"]:
            self.ever_sync = True
            alarm = None
        else:
            alarm = "async" if self.ever_sync else None
        changed, self.alarm = alarm != self.alarm, alarm
        if not changed:
            return None
        if alarm == "async":
            return ("database: the primary has no synchronous standby any more and commits "
                    "without one: acknowledged readings are on one server until it is back")
        if alarm == "stalled":
            return ("database: synchronous_standby_names is set but no synchronous standby "
                    "is connected: commits (and acks) wait")
        return "database: a synchronous standby has every commit again"

    def failed(self) -> None:
        """The check itself failed (the database away): the last state stands."""
        self.failures += 1

    def status(self) -> dict:
        return {"alarm": self.alarm, "replication": self.state, "check_failures": self.failures}
