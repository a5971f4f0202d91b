"""The live hub over real WebSockets (aiohttp clients through the real access middleware):
a fast client keeps receiving while a slow one (not reading) stays bounded in the server's
memory and is then disconnected with a reason; group visibility holds on /ws."""

import asyncio
import json
import time
import warnings
import zlib

from aiohttp import WSMsgType
from aiohttp.web import NotAppKeyWarning

from backend.hub import ALL, Hub, position_feature
from tests.authhelp import bearer
from tests.integration.api.apphelp import Api

VEHICLES = [f"v{i:02d}" for i in range(40)]
HOPELESS_S = 2.0  # short, so the slow client is given up within the test
# A padded feature (~1.5 kB as JSON) fills the slow client's socket buffers in a few MB.
PAD = "x" * 1200
ROUNDS_MAX = 5000  # bound on publishing rounds (40 positions each)
DEADLINE_S = 60


def feature(v: str, t: int) -> dict:
    f = position_feature(v, t, 50.0, 8.0 + t * 1e-6, 40.0, 90.0, t)
    f["properties"]["pad"] = PAD
    return f


async def receive_until_subscribed(ws) -> None:
    for _ in range(100):
        msg = await ws.receive_json(timeout=5)
        if msg.get("event") == "subscribed":
            return
    raise AssertionError("no subscribed event")


async def test_fast_client_keeps_receiving_slow_one_bounded_then_disconnected(tmp_path):
    hub = Hub(hopeless_s=HOPELESS_S)
    async with Api(f"sqlite://{tmp_path / 'f.db'}", hub=hub) as api:
        auth = bearer(await api.token("viewer"))
        slow = await api.client.ws_connect("/ws", headers=auth)
        await slow.send_json({"op": "subscribe", "topic": ALL})
        await receive_until_subscribed(slow)
        (slow_sub,) = hub.subscribers
        fast = await api.client.ws_connect("/ws", headers=auth)
        await fast.send_json({"op": "subscribe", "topic": ALL})
        await receive_until_subscribed(fast)
        latest: dict[str, int] = {}

        async def read_fast():
            async for msg in fast:
                if msg.type != WSMsgType.TEXT:
                    break
                data = msg.json()
                if "feature" in data:
                    p = data["feature"]["properties"]
                    latest[p["vehicle"]] = max(latest.get(p["vehicle"], 0), p["seq"])

        reader = asyncio.get_running_loop().create_task(read_fast())
        most_queued, t, started = 0, 0, time.monotonic()
        while slow_sub.reason is None:
            assert t < ROUNDS_MAX and time.monotonic() - started < DEADLINE_S, \
                "the slow client was never given up"
            t += 1
            for v in VEHICLES:
                hub.position(v, t, feature(v, t))
            most_queued = max(most_queued, len(slow_sub))
            await asyncio.sleep(0.002)  # let the send loops run
        # coalescing kept the slow client's queue to one position per vehicle
        assert most_queued <= len(VEHICLES)
        assert slow_sub.coalesced > 0
        assert "too slow" in slow_sub.reason
        # the fast client still receives: every vehicle's newest position arrives
        for v in VEHICLES:
            hub.position(v, t + 1, feature(v, t + 1))
        deadline = time.monotonic() + 20
        while any(latest.get(v) != t + 1 for v in VEHICLES):
            assert time.monotonic() < deadline, "fast client fell behind"
            await asyncio.sleep(0.05)
        # the slow client, reading at last, finds its connection closed
        closed = None
        for _ in range(ROUNDS_MAX * len(VEHICLES)):
            msg = await slow.receive(timeout=10)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                closed = msg
                break
        assert closed is not None
        if closed.type == WSMsgType.CLOSE:  # the close frame got through: it says why
            assert closed.data == 1013 and "too slow" in closed.extra
        deadline = time.monotonic() + 10
        while slow_sub in hub.subscribers:
            assert time.monotonic() < deadline, "slow subscriber not removed"
            await asyncio.sleep(0.05)
        assert hub.disconnected == 1 and len(hub.subscribers) == 1
        await fast.close()
        reader.cancel()


async def test_ws_needs_credentials_and_filters_by_group(tmp_path):
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        resp = await api.client.get("/ws")
        assert resp.status == 401
        only_a = bearer(await api.token("viewer", ["a"]))
        async with api.client.ws_connect("/ws", headers=only_a) as ws:
            await ws.send_json({"op": "subscribe", "topic": "vehicle:b"})
            assert (await ws.receive_json(timeout=5)) == {"error": "unknown topic 'vehicle:b'"}
            await ws.send_json({"op": "subscribe", "topic": ALL})
            await receive_until_subscribed(ws)
            api.hub.position("b", 1, feature("b", 1))
            api.hub.position("a", 1, feature("a", 1))
            got = await ws.receive_json(timeout=5)
            assert got["feature"]["properties"]["vehicle"] == "a"  # b's never came
            await ws.send_json({"op": "subscribe", "topic": "alerts"})
            await receive_until_subscribed(ws)
            api.hub.publish_alert({"id": 2, "vehicle": "b", "rule": "overspeed"})
            api.hub.publish_alert({"id": 3, "vehicle": "a", "rule": "overspeed"})
            assert await ws.receive_json(timeout=5) == {
                "topic": "alerts", "alert": {"id": 3, "vehicle": "a", "rule": "overspeed"}}


async def test_open_socket_follows_group_changes_and_revocation(tmp_path):
    """An admin narrows a viewer's group: the open socket stops carrying the vehicle at once
    (not at the next periodic re-check); disabling the user closes it (1008)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
            viewer = bearer(await api.token("viewer", ["a", "b"]))
            _, groups = await api.call("GET", "/api/groups", role="admin", expect=200)
            [group] = [g for g in groups["groups"] if g["vehicles"] == ["a", "b"]]
            async with api.client.ws_connect("/ws", headers=viewer) as ws:
                for topic in (ALL, "vehicle:b"):
                    await ws.send_json({"op": "subscribe", "topic": topic})
                    await receive_until_subscribed(ws)
                api.hub.position("b", 1, feature("b", 1))
                assert {(await ws.receive_json(timeout=5))["topic"] for _ in range(2)} == {
                    ALL, "vehicle:b"}
                t0 = time.monotonic()
                await api.call("PUT", f"/api/groups/{group['name']}", role="admin",
                               body={"vehicles": ["a"], "members": group["members"]},
                               expect=200)
                assert await ws.receive_json(timeout=5) == {"topic": "vehicle:b",
                                                            "event": "unsubscribed"}
                api.hub.position("b", 2, feature("b", 2))
                api.hub.position("a", 2, feature("a", 2))
                got = await ws.receive_json(timeout=5)
                assert got["topic"] == ALL and got["feature"]["properties"]["vehicle"] == "a"
                await api.call("PATCH", f"/api/users/{group['members'][0]}", role="admin",
                               body={"disabled": True}, expect=200)
                msg = await ws.receive(timeout=5)
                assert msg.type == WSMsgType.CLOSE and msg.data == 1008, msg
                assert time.monotonic() - t0 < 10  # far below WS_RECHECK_S (60 s)
    # the principal's request key is an aiohttp RequestKey, not a string
    assert not [w for w in caught if issubclass(w.category, NotAppKeyWarning)]


async def test_batched_subscription_gets_one_frame_per_tick_only_visible_vehicles(tmp_path):
    """`batch: true`: the positions of a tick arrive as one FeatureCollection (latest per
    vehicle), filtered by the principal's groups; alerts still come one by one."""
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        only_ab = bearer(await api.token("viewer", ["a", "b"]))
        async with api.client.ws_connect("/ws", headers=only_ab) as ws:
            await ws.send_json({"op": "subscribe", "topic": ALL, "batch": 1})
            assert (await ws.receive_json(timeout=5)) == {"error": "batch must be true or false"}
            for topic in (ALL, "alerts"):
                await ws.send_json({"op": "subscribe", "topic": topic, "batch": True})
                await receive_until_subscribed(ws)
            for t in (1, 2):  # within one tick (no await between): one frame
                for v in ("a", "b", "c"):
                    api.hub.position(v, t, feature(v, t))
            frame = await ws.receive_json(timeout=5)
            assert frame["topic"] == ALL and frame["type"] == "FeatureCollection"
            assert [(f["properties"]["vehicle"], f["properties"]["seq"])
                    for f in frame["features"]] == [("a", 2), ("b", 2)]  # c's never came
            api.hub.publish_alert({"id": 3, "vehicle": "a", "rule": "overspeed"})
            assert await ws.receive_json(timeout=5) == {
                "topic": "alerts", "alert": {"id": 3, "vehicle": "a", "rule": "overspeed"}}


async def test_deflated_batch_frames_come_as_binary_raw_deflate(tmp_path):
    """`deflate: true` with `batch`: each frame is a binary message holding the frame's JSON as
    raw DEFLATE; the server never negotiates permessage-deflate (it would compress per client)."""
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        admin = bearer(await api.token("admin"))
        async with api.client.ws_connect("/ws", headers=admin, compress=15) as ws:
            assert ws.compress == 0, "permessage-deflate offered by the client is declined"
            await ws.send_json({"op": "subscribe", "topic": ALL, "batch": True, "deflate": "y"})
            assert (await ws.receive_json(timeout=5)) == {"error": "deflate must be true or false"}
            await ws.send_json({"op": "subscribe", "topic": ALL, "batch": True, "deflate": True})
            await receive_until_subscribed(ws)
            for v in ("a", "b"):
                api.hub.position(v, 5, feature(v, 5))
            msg = await ws.receive(timeout=5)
            assert msg.type == WSMsgType.BINARY
            frame = json.loads(zlib.decompress(msg.data, -15))
            assert frame["type"] == "FeatureCollection"
            assert [f["properties"]["vehicle"] for f in frame["features"]] == ["a", "b"]


async def test_proposals_reach_only_dispatchers_who_see_every_vehicle_they_touch(tmp_path):
    """Re-plan proposals on `dispatch` (docs/protocol.md §9): a dispatcher limited to some
    vehicles gets only those touching no other vehicle (REST answers 404 for the others);
    one without a readable vehicle list goes to nobody. A job on no route, which everyone
    gets, closes each client's reading (the hub keeps the order)."""
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        clients = {"north": bearer(await api.token("dispatcher", ["a"])),
                   "south": bearer(await api.token("dispatcher", ["b"])),
                   "all": bearer(await api.token("dispatcher"))}
        sockets = {}
        try:
            for name, auth in clients.items():
                ws = sockets[name] = await api.client.ws_connect("/ws", headers=auth)
                await ws.send_json({"op": "subscribe", "topic": "dispatch"})
                await receive_until_subscribed(ws)
            diff = {"changes": [], "routes_before": {}, "routes_after": {}}
            for pid, vehicles in (("p-a", ["a"]), ("p-b", ["b"]), ("p-ab", ["a", "b"]),
                                  ("p-none", None), ("p-bad", [7])):
                payload = {"id": pid, "cause": "test", "status": "open", "created_ms": 1,
                           "based_on_version": 1, "diff": diff}
                if vehicles is not None:
                    payload["vehicles"] = vehicles
                api.hub.publish_dispatch("proposal", payload, None)
            api.hub.publish_dispatch("job", {"id": "marker"}, None)
            got = {}
            for name, ws in sockets.items():
                seen = []
                for _ in range(20):
                    msg = await ws.receive_json(timeout=5)
                    if msg.get("job", {}).get("id") == "marker":
                        break
                    seen.append(msg["proposal"]["id"])
                got[name] = seen
            assert got == {"north": ["p-a"], "south": ["p-b"], "all": ["p-a", "p-b", "p-ab"]}
        finally:
            for ws in sockets.values():
                await ws.close()
