"""Rate limits of the tracking links' public routes, per client address (sans-IO, `now` in
s; the leaky buckets of backend/auth/ratelimit.py)."""

from __future__ import annotations

from ..auth.ratelimit import MAX_KEYS, Buckets

# A customer's page makes two requests (the view and the feed) and the feed reconnects every
# 15 minutes or after a dropped connection: 60 at once, then one every 2 s, covers a household
# behind one address reloading at will.
REQUEST_BURST = 60
REQUEST_DRAIN_S = 2.0
# Tokens that name no link: 10, then one a minute. A token has 192 random bits, so this only
# keeps scanners from costing store look-ups.
UNKNOWN_BURST = 10
UNKNOWN_DRAIN_S = 60.0


class LinkLimiter:
    def __init__(self, max_keys: int = MAX_KEYS):
        self.requests = Buckets(REQUEST_BURST, REQUEST_DRAIN_S, max_keys)
        self.unknown = Buckets(UNKNOWN_BURST, UNKNOWN_DRAIN_S, max_keys)
        self.refused = 0

    def admit(self, address: str, now: float) -> float:
        """0 and counted if this request may go on, else the seconds to wait."""
        wait = max(self.requests.wait(address, now), self.unknown.wait(address, now))
        if wait:
            self.refused += 1
            return wait
        self.requests.add(address, now)
        return 0.0

    def missed(self, address: str, now: float) -> None:
        """The request named no link."""
        self.unknown.add(address, now)
