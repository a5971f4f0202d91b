"""The sans-IO parts: session expiry, the login limiter, client addresses, password hashes."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from backend.auth.addresses import client_address, parse_networks
from backend.auth.passwords import (
    csrf_for,
    generate_password,
    hash_password,
    verify_password,
)
from backend.auth.ratelimit import LoginLimiter
from backend.auth.sessions import SessionPolicy

H = 3_600_000  # one hour in ms


def test_session_idle_and_absolute_expiry():
    p = SessionPolicy(idle_s=2 * 3600, absolute_s=10 * 3600, touch_every_s=60)
    created = 1_000 * H
    assert p.alive(created, created, created + 2 * H - 1)
    assert not p.alive(created, created, created + 2 * H)  # idle limit
    seen = created
    for hour in range(1, 10):  # used every hour: alive until the absolute limit
        now = created + hour * H
        assert p.alive(created, seen, now), hour
        seen = now
    assert not p.alive(created, seen, created + 10 * H)  # absolute limit, in constant use
    assert p.expires_ms(created, created + 9 * H) == created + 10 * H
    assert p.expires_ms(created, created + H) == created + 3 * H


def test_session_touch_is_throttled():
    p = SessionPolicy(touch_every_s=60)
    assert not p.needs_touch(0, 59_999) and p.needs_touch(0, 60_000)
    assert p.prune_before(100 * H) == (100 * H - p.idle_s * 1000, 100 * H - p.absolute_s * 1000)


def test_limiter_per_account_drains_and_success_resets():
    lim = LoginLimiter(account_burst=3, account_drain_s=10, address_burst=100,
                       address_drain_s=1)
    now = 1000.0
    for _ in range(3):
        assert lim.retry_after("alice", "a", now) == 0
        lim.failed("alice", "a", now)
    assert lim.retry_after("alice", "a", now) == pytest.approx(10)
    assert lim.retry_after("alice", "b", now) == pytest.approx(10)  # from any address
    assert lim.retry_after("bob", "a", now) == 0
    assert lim.retry_after("alice", "a", now + 9.9) == pytest.approx(0.1)
    assert lim.retry_after("alice", "a", now + 10) == 0  # one more guess allowed
    lim.failed("alice", "a", now + 10)
    assert lim.retry_after("alice", "a", now + 10) == pytest.approx(10)
    lim.succeeded("alice")
    assert lim.retry_after("alice", "a", now + 10) == 0
    assert lim.refused == 4


def test_limiter_per_address_and_bounded_memory():
    lim = LoginLimiter(account_burst=100, address_burst=4, address_drain_s=5, max_keys=50)
    for i in range(4):
        lim.failed(f"user{i}", "10.0.0.1", 0.0)
    assert lim.retry_after("someone-else", "10.0.0.1", 0.0) == pytest.approx(5)
    assert lim.retry_after("someone-else", "10.0.0.2", 0.0) == 0
    lim.succeeded("user0")  # a success does not give the address its guesses back
    assert lim.retry_after("user0", "10.0.0.1", 0.0) == pytest.approx(5)
    for i in range(1000):
        lim.failed(f"spray{i}", f"addr{i}", 1.0)
    assert len(lim.accounts.level) == 50 and len(lim.addresses.level) == 50


def test_client_address_trusts_forwarded_for_only_from_proxies():
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"  # not a proxy
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    # the client forged a left-most entry; the proxies appended the real one and themselves
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3",
                          trusted) == "198.51.100.7"
    assert client_address("::ffff:127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("127.0.0.1", "198.51.100.7", ()) == "127.0.0.1"
    with pytest.raises(ValueError):
        parse_networks(["not-an-address"])


def test_passwords_are_argon2id_and_verify():
    h = hash_password("s3cret pass")
    assert h.startswith("$argon2id$v=19$") and "s3cret" not in h
    assert PasswordHasher().verify(h, "s3cret pass")  # the reference implementation agrees
    assert verify_password(h, "s3cret pass")
    assert not verify_password(h, "s3cret pas")
    assert not verify_password(None, "anything")  # unknown user: same work, False
    assert not verify_password("not a hash", "x")
    with pytest.raises(ValueError):
        hash_password("")
    assert len({generate_password() for _ in range(20)}) == 20
    assert len(generate_password()) >= 20
    assert csrf_for("a") != csrf_for("b") and len(csrf_for("a")) == 64
