"""A tracking link's expiry and revocation (backend/links/model.py) on given times."""

from __future__ import annotations

import pytest

from backend.dispatch.model import JobState
from backend.links.model import (
    MAX_LIFETIME_MS,
    TOKEN_RE,
    LinkState,
    TrackingLink,
    hash_token,
    link_state,
    live_until_ms,
    new_token,
)

S = JobState
T0 = 1_790_000_000_000
H = 3_600_000


def _link(**kw) -> TrackingLink:
    return TrackingLink("lnk_1", hash_token("x"), "j1", T0, "alice", **kw)


def test_expires_after_completion_plus_grace():
    link = _link(grace_s=2 * 3600)
    assert link_state(link, S.EN_ROUTE, T0 + H, T0 + 100 * H) is LinkState.LIVE
    assert link_state(link, S.COMPLETED, T0 + H, T0 + 3 * H - 1) is LinkState.LIVE
    assert link_state(link, S.COMPLETED, T0 + H, T0 + 3 * H) is LinkState.EXPIRED
    assert live_until_ms(link, S.COMPLETED, T0 + H) == T0 + 3 * H
    # failed, then back in the queue: live again
    assert link_state(link, S.UNASSIGNED, T0 + H, T0 + 5 * H) is LinkState.LIVE


def test_expires_at_its_date_and_at_most_after_90_days():
    assert link_state(_link(expires_ms=T0 + H), S.ASSIGNED, T0, T0 + H) is LinkState.EXPIRED
    assert link_state(_link(), S.ASSIGNED, T0, T0 + MAX_LIFETIME_MS) is LinkState.EXPIRED
    assert link_state(_link(), None, None, T0 + 1) is LinkState.EXPIRED  # the job is gone


def test_revoked_wins():
    assert link_state(_link(revoked_ms=T0 + 1), S.ASSIGNED, None, T0 + 2) is LinkState.REVOKED


@pytest.mark.parametrize("kw", [{"grace_s": -1}, {"grace_s": 31 * 24 * 3600},
                                {"grace_s": True}, {"expires_ms": T0},
                                {"expires_ms": T0 + MAX_LIFETIME_MS + 1}])
def test_refuses_bad_settings(kw):
    with pytest.raises(ValueError):
        _link(**kw)


def test_tokens_are_random_and_only_hashed():
    a, b = new_token(), new_token()
    assert a != b and TOKEN_RE.fullmatch(a) and TOKEN_RE.fullmatch(b)
    assert hash_token(a) != a and len(hash_token(a)) == 64
