"""A request done once per idempotency key (docs/customers.md): the first is done and its
answer kept; a repeat with the same request gets that answer again and changes nothing; the
key with another request answers 409. A refused request (4xx other than 409, or a failure)
keeps nothing, so the sender may correct it and send it again with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable

from ..links.storage import Claim

# A claim never finished after this (the backend was killed while doing it) may be taken
# over: the actions are idempotent themselves (a job's contents, a transition's id derived
# from the key), so doing one again records nothing twice.
STALE_MS = 60_000
# Keys are kept this long: senders retry within hours, not weeks.
KEEP_MS = 7 * 24 * 3600 * 1000
# An answer worth keeping: done, or refused as a conflict that a repeat would meet again.
KEPT = range(200, 300)


class KeyConflict(Exception):
    """The key was used for another request, or the same request is being done (409)."""


def request_hash(method: str, path: str, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


async def once(store, source: str, key: str, req_hash: str, now_ms: int,
               do: Callable[[], Awaitable[tuple[int, dict]]]) -> tuple[int, dict, bool]:
    """(status, answer, replayed): `do()` run at most once per (source, key)."""
    claim = await store.claim_request(source, key, req_hash, now_ms, STALE_MS)
    if claim.claim is Claim.MISMATCH:
        raise KeyConflict(f"idempotency key {key!r} was used for another request")
    if claim.claim is Claim.BUSY:
        raise KeyConflict(f"the request with idempotency key {key!r} is being done; "
                          "repeat it in a minute")
    if claim.claim is Claim.REPLAY:
        return claim.status, json.loads(claim.response), True
    try:
        status, answer = await do()
    except BaseException:
        await store.drop_request(source, key)
        raise
    if status in KEPT:
        await store.finish_request(source, key, status, json.dumps(answer))
    else:
        await store.drop_request(source, key)
    return status, answer, False
