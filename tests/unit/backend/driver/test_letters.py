"""The dead-letter rule of vehicle actions (backend/driver/letters.py): identical failures
count up to DEAD_AFTER_FAILURES, another error starts again, a set-aside letter stays so."""

from __future__ import annotations

import json

from backend.driver import letters

N = letters.DEAD_AFTER_FAILURES


def _letter() -> dict:
    return letters.new_letter("v1", 3, 17, 1_000, {"key": "k" * 80, "kind": "message"}, 5_000)


def test_identical_failures_count_up_to_the_dead_letter():
    letter = _letter()
    assert letter["key"] == "k" * 64, "bounded for the listing"
    for n in range(1, N):
        letter = letters.failed(letter, "KeyError: 'pod'", 5_000 + n)
        assert (letter["state"], letter["failures"]) == ("failing", n)
    letter = letters.failed(letter, "KeyError: 'pod'", 9_000)
    assert (letter["state"], letter["failures"], letter["last_ms"]) == ("dead", N, 9_000)
    assert letter["first_ms"] == 5_000
    assert letters.failed(letter, "TypeError: other", 9_500) == letter, "dead stays dead"


def test_another_error_starts_the_count_again():
    letter = _letter()
    for _ in range(N - 1):
        letter = letters.failed(letter, "KeyError: 'pod'", 6_000)
    letter = letters.failed(letter, "TypeError: None", 7_000)
    assert (letter["state"], letter["failures"], letter["error"]) == (
        "failing", 1, "TypeError: None")


def test_refusals_by_rule_and_replays():
    dead = letters.refused(_letter(), "upload these images first: f1", 6_000)
    assert (dead["state"], dead["failures"]) == ("dead", 1)
    never = letters.refused(_letter(), "not a JPEG", 6_000, replayable=False)
    assert never["state"] == "refused"
    done = letters.replayed(dead, "applied", 8_000)
    assert (done["state"], done["replayed_ms"], done["outcome"]) == ("replayed", 8_000,
                                                                     "applied")


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_an_error_is_described_bounded_with_its_place():
    assert letters.describe(KeyError("pod")) == "KeyError: 'pod'"  # never raised: no place
    assert letters.describe(RuntimeError()) == "RuntimeError"
    text = letters.describe(_raised(ValueError("x" * 10_000)))
    assert len(text) == letters.MAX_ERROR_CHARS and text.endswith("]")
    assert " [at test_letters.py:" in text


def test_the_same_type_at_the_same_place_is_the_same_failure():
    def bug(obj):
        raise AttributeError(f"{obj!r} has no attribute 'convert'")  # an address each time

    def fails(obj) -> str:
        try:
            bug(obj)
        except AttributeError as exc:
            return letters.describe(exc)
        raise AssertionError("did not fail")

    alive = [object(), object()]  # two addresses at once
    a, b = fails(alive[0]), fails(alive[1])
    assert a != b and letters.same_failure(a, b)
    other = letters.describe(_raised(TypeError("x")))
    assert not letters.same_failure(a, other)
    letter = letters.new_letter("v1", 1, 1, 0, {"key": "k1234567"}, 0)
    for n in range(1, N + 1):
        letter = letters.failed(letter, fails(object()), n)
    assert (letter["state"], letter["failures"]) == ("dead", N)
    # a wrapped failure is placed where its cause arose
    try:
        try:
            bug(None)
        except AttributeError as exc:
            raise RuntimeError("image f1: broke") from exc
    except RuntimeError as wrapped:
        assert letters.where(wrapped) == letters.where(wrapped.__cause__)


def test_the_action_is_kept_as_json_takes_it():
    odd = {"key": "k1234567", "kind": "message", "blob": b"\x00\x01", "big": 2**70,
           "nan": float("nan")}
    letter = letters.new_letter("v1", 1, 2, 0, odd, 0)
    json.dumps(letter["action"], allow_nan=False)  # every store's JSON takes it
    assert letter["action"]["key"] == "k1234567"
