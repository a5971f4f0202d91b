"""Tracking links through the real app and store (SQLite and PostgreSQL): made by a
dispatcher (token once, only its hash kept), the customer's view and live feed without a
login, the vehicle's position only while it heads to the link's stop, 404 for an unknown
token or another job's id, 410 once expired or revoked, 429 past the rate limit, and the
page's own CSP."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend.api.links import LIMITER, LINKS
from backend.auth.headers import TRACK_CSP
from backend.auth.ratelimit import Buckets
from backend.hub import position_feature
from backend.links.model import hash_token
from geostream.clock import wall_ms
from tests.integration.api.apphelp import Api

D = "dispatcher"
A, B = {"lat": 60.10, "lon": 24.90}, {"lat": 60.20, "lon": 24.90}
H = 3_600_000


@pytest.fixture
async def api(store_url):
    async with Api(store_url) as api:
        yield api


async def _day(api: Api) -> None:
    """Stops a then b on van-1's route, out now, driven by Aino Virtanen."""
    c = api.call
    now = wall_ms()
    await c("PUT", "/api/drivers/d1", role=D, body={"display_name": "Aino Virtanen"},
            expect=201)
    for jid, place in (("a", A), ("b", B)):
        await c("POST", "/api/jobs", role=D, body={"id": jid, "place": place,
                                                   "name": f"Order {jid}"}, expect=201)
    await c("PUT", "/api/routes/r1", role=D, expect=201, body={
        "vehicle_id": "van-1", "shift": {"start_ms": now - H, "end_ms": now + 7 * H},
        "start_depot": "dep", "end_depot": "dep", "driver_id": "d1", "status": "dispatched",
        "stops": [{"job_id": "a"}, {"job_id": "b"}]})


def _position(api: Api, lat: float, lon: float, t_ms: int) -> None:
    """What the gateway does with a committed position."""
    api.hub.position("van-1", t_ms, position_feature("van-1", t_ms, lat, lon, 40.0, 0.0, 1))


async def _link(api: Api, job: str, **body) -> dict:
    _, link = await api.call("POST", f"/api/jobs/{job}/links", role=D, body=body or None,
                             expect=201)
    return link


async def test_view_shows_the_vehicle_only_on_its_way_here(api):
    await _day(api)
    link = await _link(api, "b")
    token = link["token"]
    assert link["url"].endswith(f"/t/{token}") and "<svg" in link["qr_svg"]
    stored = await api.store.link(link["id"])
    assert stored.token_hash == hash_token(token)  # only the hash is kept
    _, listed = await api.call("GET", "/api/jobs/b/links", expect=200)
    assert token not in json.dumps(listed) and listed["links"][0]["id"] == link["id"]

    _position(api, 60.15, 24.90, wall_ms())  # between a and b, while a is ahead
    _, v = await api.call("GET", f"/t/{token}/view", role=None, expect=200)
    assert v["state"] == "assigned" and v["driver"] == "Aino" and v["vehicle"] is None
    assert not v["heading_here"] and "van-1" not in json.dumps(v)

    await api.call("POST", "/api/jobs/a/transitions", role=D, body={"to": "completed"},
                   expect=200)
    t = wall_ms() + 1000
    _position(api, 60.16, 24.90, t)
    _, v = await api.call("GET", f"/t/{token}/view", role=None, expect=200)
    assert v["heading_here"] and v["vehicle"] == {"lat": 60.16, "lon": 24.90, "time_ms": t}
    # a's own link: its stop is done; no position, and nothing of b
    a_link = await _link(api, "a")
    _, va = await api.call("GET", f"/t/{a_link['token']}/view", role=None, expect=200)
    assert va["state"] == "completed" and va["vehicle"] is None and "60.2" not in json.dumps(va)


async def test_unknown_expired_revoked(api):
    await _day(api)
    link = await _link(api, "b")
    for bad in ("b", "a", "x" * 32, link["id"], hash_token(link["token"])):
        await api.call("GET", f"/t/{bad}/view", role=None, expect=404)
    await api.call("GET", f"/t/{link['token']}", role=None, expect=200)
    await api.call("DELETE", f"/api/links/{link['id']}", role=D, expect=200)
    await api.call("GET", f"/t/{link['token']}/view", role=None, expect=410)
    status, page = await api.call("GET", f"/t/{link['token']}", role=None, raw=True)
    assert status == 410 and "expired" in page
    await api.call("DELETE", "/api/links/lnk_nope", role=D, expect=404)

    short = await _link(api, "a", grace_s=0)
    await api.call("GET", f"/t/{short['token']}/view", role=None, expect=200)
    await api.call("POST", "/api/jobs/a/transitions", role=D, body={"to": "completed"},
                   expect=200)
    await api.call("GET", f"/t/{short['token']}/view", role=None, expect=410)
    await api.call("GET", f"/t/{short['token']}/events", role=None, expect=410)
    for body in ({"grace_s": -1}, {"expires_ms": 5}, {"token": "mine"}):
        await api.call("POST", "/api/jobs/b/links", role=D, body=body, expect=400)
    await api.call("POST", "/api/jobs/b/links", role="viewer", expect=403)
    await api.call("POST", "/api/jobs/nope/links", role=D, expect=404)


async def test_rate_limited_and_own_headers(api):
    await _day(api)
    link = await _link(api, "b")
    api.app[LIMITER].requests = Buckets(3, 60.0, 100)
    for _ in range(3):
        await api.call("GET", f"/t/{link['token']}/view", role=None, expect=200)
    async with api.client.get(f"/t/{link['token']}/view") as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    api.app[LIMITER].requests = Buckets(100, 1.0, 100)
    async with api.client.get(f"/t/{link['token']}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"] == TRACK_CSP
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        page = await resp.text()
    assert "/static/track/track.js" in page and "/static/app/" not in page


async def _next_view(content) -> dict:
    """The next `view` event of an SSE stream (bounded wait)."""
    name = None
    while True:
        line = (await asyncio.wait_for(content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name == "view":
            return json.loads(line[6:])
        elif line.startswith("data: ") and name == "gone":
            raise AssertionError("gone")


async def test_live_feed_follows_the_stop(api):
    await _day(api)
    link = await _link(api, "b")
    async with api.client.get(f"/t/{link['token']}/events") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        first = await _next_view(resp.content)
        assert first["vehicle"] is None and not first["heading_here"]
        assert api.app[LINKS].streams == {link["id"]: 1}
        _position(api, 60.15, 24.90, wall_ms())  # a is ahead: nothing goes out
        await api.call("POST", "/api/jobs/a/transitions", role=D, body={"to": "completed"},
                       expect=200)
        v = await _next_view(resp.content)
        assert v["heading_here"] and v["vehicle"] is None  # its last position predates it
        t = wall_ms() + 1000
        _position(api, 60.17, 24.90, t)
        v = await _next_view(resp.content)
        assert v["vehicle"] == {"lat": 60.17, "lon": 24.90, "time_ms": t}
        eta = {"route_id": "r1", "vehicle": "van-1", "computed_ms": t,
               "stops": [{"job_id": "b", "eta_ms": t + 600_000, "spread_s": 60, "late": False}]}
        api.hub.publish_dispatch("eta", eta, "van-1", "r1")
        v = await _next_view(resp.content)
        assert v["eta"]["eta_ms"] == t + 600_000 and v["eta"]["earliest_ms"] == t + 540_000


async def test_proof_of_delivery_once_completed(api):
    import io

    from PIL import Image

    from tests.authhelp import bearer

    await _day(api)
    link = await _link(api, "b")
    drv = bearer(await api.driver_token("d1"))
    png = io.BytesIO()
    Image.new("RGB", (300, 100), (0, 0, 0)).save(png, "PNG")
    _, sig = await api.call("POST", "/api/driver/files?kind=signature&job=b", role=None,
                            body=png.getvalue(), headers={**drv, "Content-Type": "image/png"},
                            expect=201)
    _, v = await api.call("GET", f"/t/{link['token']}/view", role=None, expect=200)
    assert v["proof"] is None
    await api.call("GET", f"/t/{link['token']}/pod/{sig['id']}", role=None, expect=404)
    pod = {"recipient": "Matti", "notes": "left with the neighbour", "signature": sig["id"]}
    await api.call("POST", "/api/driver/actions", role=None, headers=drv, expect=200, body={
        "key": "device-0001-k1", "device_id": "device-0001", "device_seq": 1, "kind": "complete",
        "job_id": "b", "route_id": "r1", "pod": pod})
    _, v = await api.call("GET", f"/t/{link['token']}/view", role=None, expect=200)
    assert v["state"] == "completed"
    assert (v["proof"]["received_by"], v["proof"]["signature"]) == ("Matti", sig["id"])
    async with api.client.get(f"/t/{link['token']}/pod/{sig['id']}") as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert await resp.read() == (await api.store.driver_file(sig["id"]))["data"]
    await api.call("GET", f"/t/{link['token']}/pod/f{'0' * 40}", role=None, expect=404)
    # another stop's link never reaches this proof's images
    other = await _link(api, "a")
    await api.call("GET", f"/t/{other['token']}/pod/{sig['id']}", role=None, expect=404)
