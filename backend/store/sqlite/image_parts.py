"""Images being assembled from a vehicle's journal in the SQLite store
(sql/sqlite/0023_image_parts.sql, docs/protocol.md §4 "Images")."""

from __future__ import annotations

from .db import SqliteDb

PART_COLUMNS = ("vehicle_id", "image_id", "idx", "kind", "job_id", "count", "size", "sha256",
                "data", "received_ms")


class SqliteImageParts(SqliteDb):
    """Mixed into SqliteStore."""

    async def image_parts(self, vehicle_id: str, image_id: str) -> list[dict]:
        """The parts held of one image, by index."""
        def rows():
            return [dict(zip(PART_COLUMNS, r, strict=True)) | {"data": bytes(r[8])}
                    for r in self._db.execute(
                        f"SELECT {', '.join(PART_COLUMNS)} FROM image_parts WHERE "
                        "vehicle_id = ? AND image_id = ? ORDER BY idx", (vehicle_id, image_id))]

        return await self._run(rows)

    async def open_images(self, vehicle_id: str) -> dict[str, int]:
        """The images of a vehicle being assembled: id → when their last part came."""
        def rows():
            return dict(self._db.execute(
                "SELECT image_id, max(received_ms) FROM image_parts WHERE vehicle_id = ? "
                "GROUP BY image_id", (vehicle_id,)).fetchall())

        return await self._run(rows)

    async def put_image_part(self, part: dict) -> bool:
        """Hold one part (idempotent on vehicle, image and index); True if it was new."""
        def run():
            return self._db.execute(
                f"INSERT INTO image_parts ({', '.join(PART_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(PART_COLUMNS))}) ON CONFLICT DO NOTHING",
                [part[c] for c in PART_COLUMNS]).rowcount > 0

        return await self._run(run)

    async def drop_image_parts(self, vehicle_id: str, image_id: str) -> int:
        """Forget what is held of one image (stored, or given up); how many parts went."""
        def run():
            return self._db.execute("DELETE FROM image_parts WHERE vehicle_id = ? AND "
                                    "image_id = ?", (vehicle_id, image_id)).rowcount

        return await self._run(run)

    async def drop_stale_image_parts(self, before_ms: int) -> int:
        """Forget every image whose last part came before `before_ms` (never completed: the
        sweep of docs/operations.md); how many parts went."""
        def run():
            return self._db.execute(
                "DELETE FROM image_parts WHERE (vehicle_id, image_id) IN (SELECT vehicle_id, "
                "image_id FROM image_parts GROUP BY vehicle_id, image_id "
                "HAVING max(received_ms) < ?)", (before_ms,)).rowcount

        return await self._run(run)
