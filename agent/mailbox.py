"""The vehicle as the driver's mailbox (docs/protocol.md §3 `route.set`, `message`): routes and
dispatcher messages delivered over the downlink, kept in the journal file so they survive
restarts and power cuts, for the driver app on the vehicle. Synchronous; the command runner
calls it on its worker thread.
"""

from __future__ import annotations

import json
import sqlite3

from .cab.records import show_message

# Messages kept on the vehicle: a driver's week of dispatcher messages; the oldest go first.
MAX_MESSAGES = 500


class Mailbox:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def set_route(self, route: dict, now_ms: int) -> tuple[bool, int]:
        """Keep `route` unless a newer version of it is already here: (stored, version kept)."""
        route_id, version = route.get("route_id"), route.get("version", 0)
        if type(route_id) is not str or not route_id or type(version) is not int:
            raise ValueError("a route needs a text route_id and an integer version")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT version FROM mailbox_routes WHERE route_id=?",
                                   (route_id,)).fetchone()
            if row is not None and row[0] > version:
                return False, row[0]
            self._db.execute(
                "INSERT INTO mailbox_routes (route_id, version, body, received_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (route_id) DO UPDATE SET "
                "version=excluded.version, body=excluded.body, received_ms=excluded.received_ms",
                (route_id, version, json.dumps(route), now_ms))
        return True, version

    def clear_route(self, route_id: str) -> bool:
        return self._db.execute("DELETE FROM mailbox_routes WHERE route_id=?",
                                (route_id,)).rowcount > 0

    def routes(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._db.execute(
            "SELECT body FROM mailbox_routes ORDER BY route_id")]

    def add_message(self, message_id: int, text: str, sender: str, now_ms: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO mailbox_messages (message_id, text, sender, received_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
                (message_id, text, sender, now_ms))
            self._db.execute(
                "DELETE FROM mailbox_messages WHERE message_id <= (SELECT message_id FROM "
                "mailbox_messages ORDER BY message_id DESC LIMIT 1 OFFSET ?)", (MAX_MESSAGES,))
            # and to the tablet's list, in the same transaction (agent/cab/records.py)
            show_message(self._db, f"in:{message_id}", "to_driver", sender, text, now_ms)

    def messages(self) -> list[dict]:
        return [{"message_id": r[0], "text": r[1], "sender": r[2], "received_ms": r[3]}
                for r in self._db.execute(
                    "SELECT message_id, text, sender, received_ms FROM mailbox_messages "
                    "ORDER BY message_id")]
