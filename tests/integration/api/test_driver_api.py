"""The driver app's API on SQLite and PostgreSQL (docs/driver.md): a driver login sees only
its shift (every other operation answers 403 or 404), its actions are applied exactly once and
in its device's order, conflicts are kept, proof-of-delivery images lose their metadata and
are served only to those allowed, messages go both ways; who drives a vehicle when."""

import io

import pytest
from PIL import Image

from backend.hub import Hub, driver_topic, vehicle_topic
from geostream.clock import wall_ms
from tests.authhelp import bearer
from tests.integration.api.apphelp import Api

D = "dispatcher"
H = 3_600_000


def _route(vehicle, stops, driver=None, status="dispatched", start=None):
    start = start if start is not None else wall_ms() - H
    return {"vehicle_id": vehicle, "shift": {"start_ms": start, "end_ms": start + 8 * H},
            "start_depot": "dep", "stops": [{"job_id": s} for s in stops],
            "status": status, "driver_id": driver}


@pytest.fixture
async def api(store_url):
    async with Api(store_url, hub=Hub()) as api:
        for v in ("v1", "v2"):
            await api.store.add_vehicle(v)
        await api.call("POST", "/api/jobs/import", role=D, expect=200, csv=(
            "id,lat,lon,address,notes,contact_name,contact_phone\n"
            "a,60.17,24.94,Mannerheimintie 1,Ring twice,Aino,+358401\n"
            "b,60.18,24.95,Aleksanterinkatu 2,,,\n"
            "c,60.19,24.96,,,,\n"))
        api.drv = bearer(await api.driver_token("d1"))
        await api.call("PUT", "/api/routes/r1", role=D, body=_route("v1", ["a", "b"], "d1"),
                       expect=201)
        await api.call("PUT", "/api/routes/r2", role=D, body=_route("v2", ["c"]), expect=201)
        yield api


def action(seq, kind, job="a", route="r1", device="device-0001", **kw):
    return {"key": f"{device}-k{seq}", "device_id": device, "device_seq": seq, "kind": kind,
            "job_id": job, "route_id": route, **kw}


async def send(api, body, expect=200, headers=None):
    return await api.call("POST", "/api/driver/actions", role=None, body=body,
                          headers=headers or api.drv, expect=expect)


async def test_a_driver_sees_its_shift_and_nothing_else(api):
    c, drv = api.call, api.drv
    _, shift = await c("GET", "/api/driver/shift", role=None, headers=drv, expect=200)
    assert shift["route"]["id"] == "r1" and shift["driver"]["id"] == "d1"
    assert [(s["id"], s["place"].get("address"), s["notes"], s["contact"]["name"])
            for s in shift["stops"]] == [("a", "Mannerheimintie 1", "Ring twice", "Aino"),
                                         ("b", "Aleksanterinkatu 2", "", "")]
    _, me = await c("GET", "/api/me", role=None, headers=drv, expect=200)
    assert me["user"]["role"] == "driver" and me["user"]["driver_id"] == "d1"
    for path in ("/api/vehicles", "/api/vehicles/v1", "/api/routes/r1", "/api/routes/r2",
                 "/api/jobs", "/api/jobs/c", "/api/drivers", "/api/driver-actions",
                 "/api/vehicles/v1/messages", "/api/alerts", "/api/geofences",
                 "/api/openapi.json"):
        # (not validated: the spec says once, in its description, that a driver login
        # answers 403 to every operation but the driver app's and its own login's)
        async with api.client.get(path, headers=drv) as resp:
            assert resp.status == 403, path
    async with api.client.post("/api/jobs/c/transitions", headers=drv,
                               json={"to": "completed"}) as resp:
        assert resp.status == 403
    async with api.client.get("/ws", headers=drv) as resp:
        assert resp.status == 403
    # not a rung: a dispatcher is no driver, and an admin account linked as a driver is one
    await c("GET", "/api/driver/shift", role=D, expect=403)
    boss = bearer(await api.driver_token("d9", name="boss", role="admin"))
    async with api.client.get("/api/vehicles", headers=boss) as resp:
        assert resp.status == 403
    _, other = await c("GET", "/api/driver/shift", role=None, headers=boss, expect=200)
    assert other["route"] is None and other["stops"] == []
    # a driver's action on a stop of another route is a conflict, changing nothing there
    _, r = await send(api, action(1, "complete", job="c", route="r2"))
    assert r["action"]["outcome"] == "conflict"
    _, job = await c("GET", "/api/jobs/c", expect=200)
    assert job["state"] == "assigned"


async def test_who_drives_a_vehicle_when(api):
    now = wall_ms()
    assert await api.store.driver_of("v1", now) == "d1"
    assert await api.store.driver_of("v1", now + 9 * H) is None  # after the shift
    assert await api.store.driver_of("v2", now) is None  # a route without a driver
    await api.call("PUT", "/api/routes/r3", role=D, expect=201,
                   body=_route("v1", [], "d2", start=now + 10 * H))
    assert await api.store.driver_of("v1", now + 11 * H) == "d2"
    await api.call("PUT", "/api/routes/r4", role=D, expect=201,
                   body=_route("v2", [], "d3", status="draft"))
    assert await api.store.driver_of("v2", now) is None  # a draft is nobody's shift yet


async def test_each_action_is_applied_once_in_the_device_order(api):
    c = api.call
    done_ms = wall_ms() - 60_000  # the phone's clock: kept, never the order
    _, first = await send(api, action(1, "arrive", done_ms=done_ms))
    _, again = await send(api, action(1, "arrive", done_ms=done_ms))
    assert (first["replay"], again["replay"]) == (False, True)
    assert again["action"]["seq"] == first["action"]["seq"]
    _, done = await send(api, action(2, "complete"))
    assert done["action"]["outcome"] == "applied"
    _, hist = await c("GET", "/api/jobs/a/transitions", expect=200)
    mine = [(t["to"], t["by"]["id"]) for t in hist["transitions"]
            if t["by"]["id"].startswith("driver:")]
    assert mine == [("arrived", "driver:d1"), ("completed", "driver:d1")]
    # the same key with another body: refused, logged in the audit, nothing changed
    _, err = await send(api, action(2, "fail", reason="closed"), expect=409)
    assert "key" in err["error"]
    # the device's sequence number again under another key: refused
    reused = {**action(2, "arrive", job="b"), "key": "device-0001-other"}
    await send(api, reused, expect=409)
    _, audit = await c("GET", "/api/audit", role="admin", expect=200)
    assert sorted(e["target"] for e in audit["entries"]
                  if e["action"] == "driver.action.refused") == ["device-0001-k2",
                                                                 "device-0001-other"]
    # an action done before one already applied (a lower, unused seq): kept, not applied
    await send(api, action(5, "message", job=None, route=None, text="on my way"))
    _, late = await send(api, action(4, "arrive", job="b"))
    assert late["action"]["outcome"] == "conflict" and "order" in late["action"]["detail"]
    _, b = await c("GET", "/api/jobs/b", expect=200)
    assert b["state"] == "assigned"
    _, mine = await c("GET", "/api/driver/actions", role=None, headers=api.drv, expect=200)
    assert [(a["device_seq"], a["kind"], a["outcome"]) for a in mine["actions"]] == [
        (1, "arrive", "applied"), (2, "complete", "applied"), (5, "message", "applied"),
        (4, "arrive", "conflict")]


BAD = [
    ({"kind": "fly"}, "kind"),
    ({"key": "short"}, "key"),
    ({"device_seq": 0}, "device_seq"),
    ({"device_seq": True}, "device_seq"),
    ({"kind": "fail", "reason": ""}, "reason"),
    ({"colour": "red"}, "unknown field"),
    ({"pod": {"photos": ["../../etc/passwd"]}}, "pod.photos"),
    ({"reason": "x" * 201}, "reason"),
]


async def test_malformed_actions_are_refused_naming_the_field(api):
    for bad, field in BAD:
        status, err = await api.call("POST", "/api/driver/actions", role=None,
                                     headers=api.drv, body=action(1, "arrive") | bad)
        assert status == 400 and field in err["error"], bad
    status, err = await api.call("POST", "/api/driver/actions", role=None, headers=api.drv,
                                 body=action(1, "message", notes="x" * 20_000))
    assert status == 413 and "at most" in err["error"]
    assert await api.store.driver_actions() == []


async def test_an_action_on_a_stop_replanned_or_cancelled_offline_is_kept_as_a_conflict(api):
    c = api.call
    hub = api.hub
    watcher = hub.new_subscriber()
    hub.subscribe(watcher, "dispatch")
    # while the driver is offline, dispatch moves b to r2 and cancels a
    _, r1 = await c("GET", "/api/routes/r1", expect=200)
    await c("PUT", "/api/routes/r1", role=D, expect=200,
            body=_route("v1", ["a"], "d1") | {"version": r1["version"]})
    _, r2 = await c("GET", "/api/routes/r2", expect=200)
    await c("PUT", "/api/routes/r2", role=D, expect=200,
            body=_route("v2", ["c", "b"]) | {"version": r2["version"]})
    await c("POST", "/api/jobs/a/cancel", role=D, expect=200)
    _, x = await send(api, action(1, "complete", job="b"))
    _, y = await send(api, action(2, "arrive", job="a"))
    assert x["action"]["outcome"] == y["action"]["outcome"] == "conflict"
    assert "re-planned to route r2" in x["action"]["detail"]
    assert "cancelled" in y["action"]["detail"]
    _, b = await c("GET", "/api/jobs/b", expect=200)
    assert b["state"] == "assigned" and b["route_id"] == "r2"
    _, seen = await c("GET", "/api/driver-actions?conflicts=true", expect=200)
    assert [a["job_id"] for a in seen["actions"]] == ["b", "a"]
    _, hidden = await c("GET", "/api/driver-actions?conflicts=true", vehicles=["v2"],
                        expect=200)
    assert hidden["actions"] == []  # the conflicts were on v1's route
    pushed = [m["driver_action"]["job_id"] for m in watcher.drain() if "driver_action" in m]
    assert pushed == ["b", "a"]


def _jpeg_with_gps() -> bytes:
    im = Image.new("RGB", (2400, 1200), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = {1: "N", 2: (60.0, 10.0, 1.5), 3: "E", 4: (24.0, 56.0, 2.5)}
    exif[0x8825] = gps
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes())
    raw = out.getvalue()
    assert b"PhoneMaker" in raw and Image.open(io.BytesIO(raw)).getexif().get_ifd(0x8825)
    return raw


async def test_proof_of_delivery_is_stripped_stored_and_served_only_to_those_allowed(api):
    c, drv = api.call, api.drv
    raw = _jpeg_with_gps()
    _, f = await c("POST", "/api/driver/files?kind=photo&job=a", role=None, body=raw,
                   headers={**drv, "Content-Type": "image/jpeg"}, expect=201)
    _, again = await c("POST", "/api/driver/files?kind=photo&job=a", role=None, body=raw,
                       headers={**drv, "Content-Type": "image/jpeg"}, expect=200)
    assert again["id"] == f["id"] and (f["width"], f["height"]) == (1600, 800)
    sig = io.BytesIO()
    Image.new("RGBA", (600, 200), (0, 0, 0, 0)).save(sig, "PNG")
    _, s = await c("POST", "/api/driver/files?kind=signature&job=a", role=None,
                   body=sig.getvalue(), headers={**drv, "Content-Type": "image/png"},
                   expect=201)
    status, _ = await c("POST", "/api/driver/files?kind=photo&job=c", role=None, body=raw,
                        headers={**drv, "Content-Type": "image/jpeg"})
    assert status == 404  # not a stop of this driver's route
    status, err = await c("POST", "/api/driver/files?kind=photo&job=a", role=None,
                          body=b"GIF89a" + b"\0" * 100,
                          headers={**drv, "Content-Type": "image/jpeg"})
    assert status == 400 and "JPEG" in err["error"]
    pod = {"recipient": "Aino", "notes": "at the door", "signature": s["id"],
           "photos": [f["id"]]}
    missing = pod | {"photos": ["f" + "0" * 40]}
    _, err = await send(api, action(1, "complete", pod=missing), expect=409)
    assert err["missing_files"] == ["f" + "0" * 40]
    _, done = await send(api, action(1, "complete", pod=pod))
    assert done["action"]["body"]["pod"]["photos"] == [f["id"]]
    stored = await api.store.driver_file(f["id"])
    assert b"PhoneMaker" not in stored["data"]
    back = Image.open(io.BytesIO(stored["data"]))
    assert back.format == "JPEG" and not back.getexif() and "icc_profile" not in back.info
    # a flood of images for one stop is refused once the stop has MAX_FILES_PER_STOP
    from backend.api.driver import MAX_FILES_PER_STOP

    for i in range(MAX_FILES_PER_STOP - 2):
        im = io.BytesIO()
        Image.new("L", (8, 8), i).save(im, "PNG")
        await c("POST", "/api/driver/files?kind=photo&job=a", role=None, body=im.getvalue(),
                headers={**drv, "Content-Type": "image/png"}, expect=201)
    status, _ = await c("POST", "/api/driver/files?kind=photo&job=a", role=None, body=raw,
                        headers={**drv, "Content-Type": "image/jpeg"})
    assert status == 413
    # served: the driver, a dispatcher who sees v1; not one who sees only v2, not another driver
    await c("GET", f"/api/driver/files/{f['id']}", role=None, headers=drv, expect=200)
    _, img = await c("GET", f"/api/pod-files/{f['id']}", expect=200)
    assert img == stored["data"]
    await c("GET", f"/api/pod-files/{f['id']}", vehicles=["v2"], expect=404)
    other = bearer(await api.driver_token("d2"))
    await c("GET", f"/api/driver/files/{f['id']}", role=None, headers=other, expect=404)


async def test_messages_go_both_ways_and_reach_the_live_topics(api):
    c, hub = api.call, api.hub
    panel, app = hub.new_subscriber(), hub.new_subscriber()
    hub.subscribe(panel, vehicle_topic("v1"))
    app.topics.add(driver_topic("d1"))
    _, m = await c("POST", "/api/vehicles/v1/messages", role=D,
                   body={"text": "Gate code 1234", "id": "msg-00001"}, expect=201)
    await c("POST", "/api/vehicles/v1/messages", role=D,
            body={"text": "Gate code 1234", "id": "msg-00001"}, expect=200)
    assert m["message"]["driver_id"] == "d1"
    await send(api, action(1, "message", job=None, route=None, text="Running 10 min late"))
    _, mine = await c("GET", "/api/driver/messages", role=None, headers=api.drv, expect=200)
    assert [(x["direction"], x["text"]) for x in mine["messages"]] == [
        ("to_driver", "Gate code 1234"), ("from_driver", "Running 10 min late")]
    _, panel_list = await c("GET", "/api/vehicles/v1/messages", expect=200)
    assert len(panel_list["messages"]) == 2
    await c("GET", "/api/vehicles/v1/messages", vehicles=["v2"], expect=404)
    await c("POST", "/api/vehicles/v1/messages", body={"text": "hi"}, expect=403)  # a viewer
    assert [x["message"]["text"] for x in panel.drain() if "message" in x] == [
        "Gate code 1234", "Running 10 min late"]
    pushed = [x["message"] for x in app.drain() if "message" in x]
    assert [x["text"] for x in pushed] == ["Gate code 1234", "Running 10 min late"]
    assert [x["seq"] for x in pushed] == [x["seq"] for x in mine["messages"]]  # as stored


async def test_the_same_action_sent_at_once_twice_is_applied_once(api):
    """Two copies racing (the app's retry while the first answer is on its way, or the app and
    the vehicle's journal): one applies, the other gets the stored row; one transition."""
    import asyncio

    from backend.driver.actions import parse_action
    from backend.driver.applier import ActionApplier

    applier = ActionApplier(api.store)
    a = parse_action(action(1, "arrive"))
    now = wall_ms()
    results = await asyncio.gather(*(applier.apply("d1", a, now) for _ in range(4)))
    assert sorted(new for _, new in results) == [False, False, False, True]
    assert len({row["seq"] for row, _ in results}) == 1
    mine = [t for t in await api.store.transitions("a") if t.by.id == "driver:d1"]
    assert [t.to_state.value for t in mine] == ["arrived"]
    # through the vehicle: applied as whoever drives it now, or not at all
    b = parse_action(action(2, "complete"))
    row, new = await applier.apply_from_vehicle("v1", b, wall_ms())
    assert new and row["via"] == "vehicle" and row["driver_id"] == "d1"
    assert await applier.apply_from_vehicle("v2", parse_action(action(3, "arrive", job="c",
                                                                       route="r2")),
                                            wall_ms()) is None


async def test_a_vehicle_action_naming_images_that_never_came_is_kept_not_retried(api):
    """Images are uploaded over HTTP; an action from a vehicle's journal naming some the
    backend never got can never be applied: it stays as its reading (logged), and the batch
    is acknowledged — raising would leave the batch unacknowledged and the vehicle's journal
    sent again forever."""
    from backend.driver.applier import ActionApplier
    from backend.store.rows import StoredReading
    from backend.vehicle_actions import VehicleActions

    actions = VehicleActions(ActionApplier(api.store))
    body = action(1, "complete", pod={"recipient": "Ana", "photos": ["f" + "a" * 40]})
    await actions("v1", [StoredReading("v1", 1, 1, wall_ms(), "act", data=body)], wall_ms())
    assert (actions.applied, actions.kept) == (0, 1)
    assert await api.store.driver_action(body["key"]) is None


async def test_a_vehicle_action_is_applied_as_the_driver_when_it_was_taken(api):
    """The journal delivers an action after a shift change (a tunnel, a night offline): it is
    the driver's who drove the vehicle when it was taken (the `act` reading's device time),
    not the one driving when it arrives."""
    from backend.driver.applier import ActionApplier
    from backend.store.rows import StoredReading
    from backend.vehicle_actions import VehicleActions

    now = wall_ms()
    await api.store.add_vehicle("v3")
    await api.call("POST", "/api/jobs/import", role=D, expect=200,
                   csv="id,lat,lon\nd,60.2,24.97\n")
    await api.call("PUT", "/api/routes/r5", role=D, expect=201,
                   body=_route("v3", ["d"], "d1", start=now - 10 * H) | {
                       "shift": {"start_ms": now - 10 * H, "end_ms": now - 2 * H}})
    await api.call("PUT", "/api/routes/r6", role=D, expect=201,
                   body=_route("v3", [], "d2", start=now - 2 * H))
    assert await api.store.driver_of("v3", now) == "d2"
    actions = VehicleActions(ActionApplier(api.store))
    body = action(1, "arrive", job="d", route="r5", device="tablet-0003")
    taken = now - 3 * H  # on d1's shift
    await actions("v3", [StoredReading("v3", 1, 1, taken, "act", data=body)], now)
    assert (actions.applied, actions.kept) == (1, 0)
    row = await api.store.driver_action(body["key"])
    assert (row["driver_id"], row["outcome"], row["via"]) == ("d1", "applied", "vehicle")
    assert [t.by.id for t in await api.store.transitions("d")][-1] == "driver:d1"
