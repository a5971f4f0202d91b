"""Inbound integrations through the real app and store (SQLite and PostgreSQL): signed
webhooks (signatures computed here from the documentation, not by the signing code) and REST
calls with an Idempotency-Key create, update and cancel jobs once; a repeat changes nothing,
the key with another body answers 409, a malformed payload a clear 400 with nothing done; an
inbound cancellation of a job on a route asks for a re-plan."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from backend.api.common import GATEWAY
from tests.integration.api.apphelp import Api

D = "dispatcher"
PLACE = {"lat": 60.17, "lon": 24.94}


@pytest.fixture
async def api(store_url):
    async with Api(store_url) as api:
        yield api


def _signed(secret: str, body: bytes, ts: int | None = None) -> dict:
    """As docs/customers.md tells a sender: HMAC-SHA256 over "<timestamp>.<body>", hex."""
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Fleet-Timestamp": str(ts), "X-Fleet-Signature": f"v1={mac}",
            "Content-Type": "application/json"}


async def _post(api: Api, source: str, secret: str, event, ts=None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(event).encode()
    async with api.client.post(f"/api/integrations/{source}/events", data=body,
                               headers=_signed(secret, body, ts)) as resp:
        api.validate("POST", f"/api/integrations/{source}/events", body, resp.status,
                     resp.content_type, await resp.read(), dict(resp.headers))
        return resp.status, await resp.json(), resp.headers.get("Idempotent-Replayed")


async def _jobs(api: Api) -> list[str]:
    _, page = await api.call("GET", "/api/jobs", expect=200)
    return [j["id"] for j in page["jobs"]]


async def test_webhook_events_are_done_once(api):
    _, src = await api.call("PUT", "/api/integrations/erp", role="admin", expect=201)
    secret = src["secret"]
    create = {"id": "ev-1", "type": "job.create", "job": {"id": "o1", "place": PLACE}}
    status, first, replayed = await _post(api, "erp", secret, create)
    assert status == 201 and first["id"] == "o1" and replayed is None
    status, again, replayed = await _post(api, "erp", secret, create)
    assert (status, again, replayed) == (201, first, "true")
    assert await _jobs(api) == ["o1"]
    other = {**create, "job": {"id": "o2", "place": PLACE}}
    status, err, _ = await _post(api, "erp", secret, other)
    assert status == 409 and "another request" in err["error"]
    assert await _jobs(api) == ["o1"]

    update = {"id": "ev-2", "type": "job.update",
              "job": {"id": "o1", "place": PLACE, "service_s": 300}}
    status, rec, _ = await _post(api, "erp", secret, update)
    assert status == 200 and rec["service_s"] == 300

    # a cancellation of a job on a route: cancelled once, and a re-plan asked for
    asked = []
    api.app[GATEWAY].dispatch.on_event = lambda kind, *a: asked.append((kind, *a))
    now = int(time.time() * 1000)
    await api.call("PUT", "/api/routes/r1", role=D, expect=201, body={
        "vehicle_id": "v1", "shift": {"start_ms": now, "end_ms": now + 3_600_000},
        "start_depot": "dep", "end_depot": "dep", "stops": [{"job_id": "o1"}]})
    cancel = {"id": "ev-3", "type": "job.cancel", "job_id": "o1", "reason": "order withdrawn"}
    for _ in range(2):
        status, done, _ = await _post(api, "erp", secret, cancel)
        assert status == 200 and done["job"]["state"] == "cancelled"
    _, hist = await api.call("GET", "/api/jobs/o1/transitions", expect=200)
    cancels = [t for t in hist["transitions"] if t["to"] == "cancelled"]
    assert len(cancels) == 1 and cancels[0]["by"] == {"kind": "person",
                                                      "id": "integration:erp"}
    assert [a for a in asked if a[0] == "request"] == [
        ("request", "job o1 cancelled by the erp integration", ())]


@pytest.mark.parametrize("event, says", [
    ({"id": "e", "type": "job.create"}, "job: required"),
    ({"id": "e", "type": "job.create", "job": {"id": "x", "place": {"lat": 91, "lon": 0}}},
     "job.lat: a number within ±90"),
    ({"id": "e", "type": "job.delete", "job_id": "x"}, "type: one of"),
    ({"id": "bad id!", "type": "job.cancel", "job_id": "x"}, "id:"),
    ({"id": "e", "type": "job.cancel", "job_id": "x", "extra": 1}, "unknown field 'extra'"),
    ([1, 2], "body: a JSON object"),
])
async def test_malformed_events_are_refused_and_change_nothing(api, event, says):
    _, src = await api.call("PUT", "/api/integrations/erp", role="admin", expect=201)
    status, err, _ = await _post(api, "erp", src["secret"], event)
    assert status == 400 and says in err["error"], err
    assert await _jobs(api) == []
    # the key is free again: the corrected event is done
    fixed = {"id": "e", "type": "job.create", "job": {"id": "x", "place": PLACE}}
    assert (await _post(api, "erp", src["secret"], fixed))[0] == 201


async def test_signatures_are_checked(api):
    _, src = await api.call("PUT", "/api/integrations/erp", role="admin", expect=201)
    ev = {"id": "e1", "type": "job.create", "job": {"id": "o1", "place": PLACE}}
    for source, secret, ts in (("erp", "wrong", None), ("erp", src["secret"], 1_000_000),
                               ("nope", src["secret"], None)):
        status, err, _ = await _post(api, source, secret, ev, ts)
        assert status == 401, err
    async with api.client.post("/api/integrations/erp/events", data=b"{}") as resp:
        assert resp.status == 401
    big = b"{" + b" " * (300 * 1024) + b"}"
    async with api.client.post("/api/integrations/erp/events", data=big,
                               headers=_signed(src["secret"], big)) as resp:
        assert resp.status == 413
    # a new secret: the old one stops working
    _, new = await api.call("PUT", "/api/integrations/erp", role="admin", expect=200)
    assert (await _post(api, "erp", src["secret"], ev))[0] == 401
    assert (await _post(api, "erp", new["secret"], ev))[0] == 201
    _, listed = await api.call("GET", "/api/integrations", role="admin", expect=200)
    assert "secret" not in json.dumps(listed)
    await api.call("DELETE", "/api/integrations/erp", role="admin", expect=204)
    assert (await _post(api, "erp", new["secret"], ev))[0] == 401
    await api.call("PUT", "/api/integrations/erp", role=D, expect=403)


async def test_rest_calls_with_an_idempotency_key(api):
    key = {"Idempotency-Key": "order-7"}
    job = {"id": "o7", "place": PLACE}
    _, first = await api.call("POST", "/api/jobs", role=D, body=job, headers=key, expect=201)
    status, again = await api.call("POST", "/api/jobs", role=D, body=job, headers=key)
    assert (status, again) == (201, first)
    await api.call("POST", "/api/jobs", role=D, body={**job, "id": "o8"}, headers=key,
                   expect=409)
    assert await _jobs(api) == ["o7"]
    # a refusal keeps nothing: the same key then works for the corrected request
    bad = {"Idempotency-Key": "order-9"}
    await api.call("POST", "/api/jobs", role=D, body={"id": "o9", "place": {"lat": 99}},
                   headers=bad, expect=400)
    await api.call("POST", "/api/jobs", role=D, body={"id": "o9", "place": PLACE},
                   headers=bad, expect=201)
    # another user's same key is theirs
    await api.call("POST", "/api/jobs", role="admin", body={"id": "o10", "place": PLACE},
                   headers=key, expect=201)
    cancel = {"Idempotency-Key": "cancel-7"}
    for _ in range(2):
        _, done = await api.call("POST", "/api/jobs/o7/cancel", role=D, headers=cancel,
                                 expect=200)
        assert done["job"]["state"] == "cancelled"
    _, hist = await api.call("GET", "/api/jobs/o7/transitions", expect=200)
    assert [t["to"] for t in hist["transitions"]] == ["cancelled"]
    await api.call("POST", "/api/jobs", role=D, body=job, headers={"Idempotency-Key": "a b"},
                   expect=400)
