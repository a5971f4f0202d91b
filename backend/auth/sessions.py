"""Browser-session expiry (sans-IO): idle and absolute lifetimes, decided from `now`.

The session rows live in the store (table `sessions`: digest of the cookie, user, created,
last seen), so a backend restart logs nobody out and a `users passwd|disable` from the CLI
ends sessions at once. This object holds only the rules and takes the time as an argument.
aiohttp-session is not used: its storages are an encrypted cookie (no server-side logout or
revocation) or Redis/Memcached, and the store we already have does the job in four queries.
"""

from __future__ import annotations

from dataclasses import dataclass

# A dispatcher's shift: an untouched session ends after this.
IDLE_S = 8 * 3600
# Even a session in constant use ends after this (a long shift): a stolen cookie is good for
# hours, not for days.
ABSOLUTE_S = 12 * 3600
# Last-seen is written back at most this often: one store write per minute per user, not per
# request; the idle expiry is then up to this much longer than configured.
TOUCH_EVERY_S = 60


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_s: float = IDLE_S
    absolute_s: float = ABSOLUTE_S
    touch_every_s: float = TOUCH_EVERY_S

    def expires_ms(self, created_ms: int, seen_ms: int) -> int:
        """When the session ends unless it is used again (then: later, up to the absolute)."""
        return min(seen_ms + round(self.idle_s * 1000), created_ms + round(self.absolute_s * 1000))

    def alive(self, created_ms: int, seen_ms: int, now_ms: int) -> bool:
        return now_ms < self.expires_ms(created_ms, seen_ms)

    def needs_touch(self, seen_ms: int, now_ms: int) -> bool:
        """True if the store's last-seen should move to `now_ms`."""
        return now_ms - seen_ms >= self.touch_every_s * 1000

    def prune_before(self, now_ms: int) -> tuple[int, int]:
        """(seen before, created before): rows older than these are dead."""
        return (now_ms - round(self.idle_s * 1000), now_ms - round(self.absolute_s * 1000))
