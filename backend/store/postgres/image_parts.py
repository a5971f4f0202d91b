"""Images being assembled from a vehicle's journal in the PostgreSQL store
(sql/postgres/0023_image_parts.sql); the same behaviour as backend/store/sqlite/image_parts.py."""

from __future__ import annotations

from ..sqlite.image_parts import PART_COLUMNS
from .db import PostgresDb


class PostgresImageParts(PostgresDb):
    """Mixed into PostgresStore."""

    async def image_parts(self, vehicle_id: str, image_id: str) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT {', '.join(PART_COLUMNS)} FROM image_parts WHERE vehicle_id = $1 AND "
            "image_id = $2 ORDER BY idx", vehicle_id, image_id)
        return [dict(zip(PART_COLUMNS, r, strict=True)) | {"data": bytes(r[8])} for r in rows]

    async def open_images(self, vehicle_id: str) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT image_id, max(received_ms) FROM image_parts WHERE vehicle_id = $1 "
            "GROUP BY image_id", vehicle_id)
        return {r[0]: r[1] for r in rows}

    async def put_image_part(self, part: dict) -> bool:
        return bool(await self._pool.fetchval(
            f"INSERT INTO image_parts ({', '.join(PART_COLUMNS)}) VALUES "
            f"({', '.join(f'${i}' for i in range(1, len(PART_COLUMNS) + 1))}) "
            "ON CONFLICT DO NOTHING RETURNING 1", *[part[c] for c in PART_COLUMNS]))

    async def drop_image_parts(self, vehicle_id: str, image_id: str) -> int:
        status = await self._pool.execute(
            "DELETE FROM image_parts WHERE vehicle_id = $1 AND image_id = $2",
            vehicle_id, image_id)
        return int(status.split()[-1])

    async def drop_stale_image_parts(self, before_ms: int) -> int:
        status = await self._pool.execute(
            "DELETE FROM image_parts WHERE (vehicle_id, image_id) IN (SELECT vehicle_id, "
            "image_id FROM image_parts GROUP BY vehicle_id, image_id "
            "HAVING max(received_ms) < $1)", before_ms)
        return int(status.split()[-1])
