"""The in-cab tablet's pairing rules (agent/cab/pairing.py), with a fixed source of randomness
and time given."""

from __future__ import annotations

import itertools

from agent.cab.pairing import (
    ATTEMPT_SPACING_S,
    CODE_TTL_S,
    MAX_FAILED,
    Paired,
    Pairing,
    Refused,
    Wait,
    csrf_token,
    normalise,
    shown,
    token_hash,
)


def fixed_random():
    counter = itertools.count()
    return lambda n: bytes(next(counter) % 256 for _ in range(n))


def test_a_code_pairs_once():
    p = Pairing(fixed_random())
    code, ttl = p.issue(now=100.0)
    assert ttl == CODE_TTL_S and len(code) == 8 and shown(code) == f"{code[:4]}-{code[4:]}"
    paired = p.redeem(shown(code).lower(), now=101.0)  # typed in lower case with its dash
    assert isinstance(paired, Paired)
    assert paired.token_hash == token_hash(paired.token) and len(paired.token) >= 43
    again = p.redeem(code, now=103.0)
    assert isinstance(again, Refused), "a code is spent by its first use"


def test_codes_expire_and_a_new_one_replaces_the_old():
    p = Pairing(fixed_random())
    old, _ = p.issue(now=0.0)
    new, _ = p.issue(now=10.0)
    assert old != new
    assert isinstance(p.redeem(old, now=20.0), Refused)
    assert isinstance(p.redeem(new, now=10.0 + CODE_TTL_S + 1), Refused), "expired"
    assert not p.outstanding(10.0 + CODE_TTL_S + 1)


def test_wrong_codes_burn_the_code_and_attempts_are_spaced():
    p = Pairing(fixed_random())
    code, _ = p.issue(now=0.0)
    t = 1.0
    assert isinstance(p.redeem("WRONG000", now=t), Refused)
    too_fast = p.redeem(code, now=t + ATTEMPT_SPACING_S / 2)
    assert isinstance(too_fast, Wait) and too_fast.retry_after_s > 0
    for _ in range(MAX_FAILED - 2):
        t += ATTEMPT_SPACING_S
        assert isinstance(p.redeem("WRONG000", now=t), Refused)
    t += ATTEMPT_SPACING_S
    burnt = p.redeem("WRONG000", now=t)
    assert isinstance(burnt, Wait) and "burnt" in burnt.reason
    t += ATTEMPT_SPACING_S
    assert isinstance(p.redeem(code, now=t), Refused), "the right code no longer pairs"


def test_hostile_input_is_a_wrong_code():
    p = Pairing(fixed_random())
    code, _ = p.issue(now=0.0)
    t = 0.0
    for given in (None, 12345678, ["A"], "A" * 10_000, ""):
        t += ATTEMPT_SPACING_S
        assert isinstance(p.redeem(given, now=t), Refused | Wait)


def test_normalise_reads_what_people_type():
    assert normalise("abcd-efgh") == "ABCDEFGH"
    assert normalise("O1L2 i3") == "011213"


def test_the_csrf_token_is_the_tokens_own():
    assert csrf_token("a") != csrf_token("b") and csrf_token("a") == csrf_token("a")
