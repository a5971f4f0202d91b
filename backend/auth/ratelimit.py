"""Login rate limiting per account and per client address (sans-IO, leaky buckets, `now` in s).

Each failed login adds one to the account's bucket and the address's bucket; buckets drain at
a steady rate. A login is refused (429) while either bucket is full, with the wait until it is
not. A success empties the account's bucket (not the address's: one right password does not
buy an address more guesses at others). Memory is bounded: past `max_keys` buckets the oldest
are forgotten. Hand-written because the few PyPI limiters are either framework-bound or
Redis-backed; this is 60 lines and fully deterministic under a fake clock.
"""

from __future__ import annotations

from collections import OrderedDict

# 5 wrong passwords in a row, then one more guess a minute: an online attack on one account
# gets ~1440 guesses a day, against a 120-bit generated password or any sane one.
ACCOUNT_BURST = 5
ACCOUNT_DRAIN_S = 60.0
# One address (an office NAT can hold many users) may fail 20 times, then once every 6 s.
ADDRESS_BURST = 20
ADDRESS_DRAIN_S = 6.0
# Buckets kept at most: a spray over a million names costs a bounded amount of memory.
MAX_KEYS = 10_000


class Buckets:
    """Leaky buckets per key (`add` one, `wait` until one more fits), at most `max_keys`."""

    def __init__(self, burst: int, drain_s: float, max_keys: int):
        self.burst, self.drain_s, self.max_keys = burst, drain_s, max_keys
        self.level: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (level, t)

    def _now_level(self, key: str, now: float) -> float:
        level, t = self.level.get(key, (0.0, now))
        return max(0.0, level - max(0.0, now - t) / self.drain_s)

    def wait(self, key: str, now: float) -> float:
        """Seconds until one more failure would fit (0: allowed now)."""
        over = self._now_level(key, now) + 1 - self.burst
        return max(0.0, over * self.drain_s)

    def add(self, key: str, now: float) -> None:
        self.level[key] = (self._now_level(key, now) + 1, now)
        self.level.move_to_end(key)
        while len(self.level) > self.max_keys:
            self.level.popitem(last=False)

    def clear(self, key: str) -> None:
        self.level.pop(key, None)


class LoginLimiter:
    def __init__(self, account_burst: int = ACCOUNT_BURST,
                 account_drain_s: float = ACCOUNT_DRAIN_S, address_burst: int = ADDRESS_BURST,
                 address_drain_s: float = ADDRESS_DRAIN_S, max_keys: int = MAX_KEYS):
        self.accounts = Buckets(account_burst, account_drain_s, max_keys)
        self.addresses = Buckets(address_burst, address_drain_s, max_keys)
        self.refused = 0  # attempts answered 429

    def retry_after(self, account: str, address: str, now: float) -> float:
        """0 if this attempt may be checked, else the seconds to wait."""
        wait = max(self.accounts.wait(account, now), self.addresses.wait(address, now))
        if wait:
            self.refused += 1
        return wait

    def failed(self, account: str, address: str, now: float) -> None:
        self.accounts.add(account, now)
        self.addresses.add(address, now)

    def succeeded(self, account: str) -> None:
        self.accounts.clear(account)
