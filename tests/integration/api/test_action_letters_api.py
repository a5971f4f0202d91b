"""Dead letters of vehicle actions for admins (docs/operations.md "Dead letters of vehicle
actions"), both stores: an image the backend cannot decode makes the proof naming it a dead
letter with the reason instead of an action silently left unapplied; a bug in the
re-encoding is counted, set aside, and replayed through the API once fixed, exactly once;
stale image parts are swept at their age limit."""

from __future__ import annotations

import asyncio
import io
import json
import os

import pytest
from PIL import Image

from backend import vehicle_actions
from backend.api.common import GATEWAY
from backend.cli import main
from backend.driver import letters
from backend.driver.applier import ActionApplier
from backend.hub import Hub
from backend.store import open_store
from backend.store.rows import StoredReading
from backend.vehicle_actions import ActionFailed, VehicleActions
from geostream import image_parts as ip
from geostream.clock import wall_ms
from tests.integration.api.apphelp import Api

D, A = "dispatcher", "admin"
H = 3_600_000


def _mount(app, store) -> None:
    """The gateway's applier of vehicle actions, as the running backend sets it."""
    app[GATEWAY].driver_actions = VehicleActions(ActionApplier(store))


@pytest.fixture
async def api(store_url):
    async with Api(store_url, hub=Hub(), mount=_mount) as api:
        now = wall_ms()
        await api.store.add_vehicle("v1")
        await api.call("POST", "/api/jobs/import", role=D, expect=200,
                       csv="id,lat,lon\na,60.17,24.94\n")
        await api.call("PUT", "/api/routes/r1", role=D, expect=201, body={
            "vehicle_id": "v1", "shift": {"start_ms": now - H, "end_ms": now + 7 * H},
            "start_depot": "dep", "stops": [{"job_id": "a"}], "status": "dispatched",
            "driver_id": "d1"})
        api.actions = api.app[GATEWAY].driver_actions
        yield api


def _id(n: int) -> str:
    return "f" + f"{n:x}".rjust(40, "0")


def _readings(actions: list[dict], first_seq: int = 1) -> list[StoredReading]:
    return [StoredReading("v1", 1, q, wall_ms(), "act", data=a)
            for q, a in enumerate(actions, first_seq)]


def _proof(image_id: str, seq: int = 1) -> dict:
    return {"key": f"tab-0001-k{seq}", "device_id": "tab-0001", "device_seq": seq,
            "kind": "complete", "job_id": "a", "route_id": "r1",
            "pod": {"recipient": "Aino", "photos": [image_id], "signature": None}}


def _png() -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (200, 150), os.urandom(200 * 150 * 3)).save(out, "PNG")
    return out.getvalue()


async def test_an_undecodable_image_makes_its_proof_a_dead_letter_with_the_reason(
        api, store_url, capsys):
    parts = ip.split(_id(1), "photo", "a", os.urandom(ip.PART_BYTES + 99), "tab-0001")
    batch = _readings([*parts, _proof(_id(1))])
    dead = await api.actions("v1", batch, wall_ms())
    assert [q for q, _ in dead] == [2] and "not a JPEG" in dead[0][1]  # the part, as before
    _, body = await api.call("GET", "/api/action-letters", role=A, expect=200)
    by_seq = {x["seq"]: x for x in body["letters"]}
    assert set(by_seq) == {2, 3}
    assert (by_seq[2]["state"], by_seq[2]["kind"]) == ("refused", "image.part")
    proof = by_seq[3]
    assert (proof["state"], proof["key"], proof["failures"]) == ("dead", "tab-0001-k1", 1)
    assert f"upload these images first: {_id(1)}" in proof["error"]
    assert "refused: image " + _id(1) + ": not a JPEG" in proof["error"], "says why"
    await api.call("GET", "/api/action-letters", role=D, expect=403)
    _, only = await api.call("GET", "/api/action-letters?state=refused&vehicle=v1", role=A,
                             expect=200)
    assert [x["seq"] for x in only["letters"]] == [2]
    await api.call("GET", "/api/action-letters?state=gone", role=A, expect=400)
    # the admin's CLI lists the same, as JSON lines
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["--db", store_url, "vehicles", "letters",
                                          "--state", "dead"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == proof
    # the journal sends the batch again (a lost ack): the same refusal, nothing held or applied
    again = await api.actions("v1", batch, wall_ms())
    assert [q for q, _ in again] == [2] and "not a JPEG" in again[0][1]
    assert await api.store.image_parts("v1", _id(1)) == []
    assert await api.store.driver_action("tab-0001-k1") is None
    # a refused image cannot be replayed; the proof can, but its image is still missing
    await api.call("POST", "/api/action-letters/v1/1/2/replay", role=A, expect=409)
    _, again = await api.call("POST", "/api/action-letters/v1/1/3/replay", role=A, expect=200)
    assert again["letter"]["state"] == "dead" and "upload these images" in again["letter"]["error"]
    await api.call("POST", "/api/action-letters/v1/1/99/replay", role=A, expect=404)
    await api.call("POST", "/api/action-letters/v1/1/3/replay", role=D, expect=403)


async def test_a_bug_in_the_reencoding_is_set_aside_then_replayed_once(api, store_url,
                                                                       monkeypatch):
    raw = _png()
    parts = ip.split(_id(2), "photo", "a", raw, "tab-0001")
    readings = _readings([*parts, _proof(_id(2))])
    last = len(parts)  # the seq of the part that completes the image

    def broken(data, kind):
        raise AttributeError("'NoneType' object has no attribute 'convert'")

    monkeypatch.setattr(vehicle_actions, "clean_image", broken)
    for attempt in range(1, 3):  # the journal sends it again
        with pytest.raises(ActionFailed):
            await api.actions("v1", readings, wall_ms())
        assert (await api.store.action_letter("v1", 1, last))["failures"] == attempt
    # the backend restarts: a new store connection and applier count on from the database
    restarted = open_store(store_url)
    await restarted.open()
    try:
        again = VehicleActions(ActionApplier(restarted))
        for attempt in range(3, letters.DEAD_AFTER_FAILURES):
            with pytest.raises(ActionFailed):
                await again("v1", readings, wall_ms())
            assert (await restarted.action_letter("v1", 1, last))["failures"] == attempt
        assert await again("v1", readings, wall_ms()) == []  # set aside: acknowledged
    finally:
        await restarted.close()
    part = await api.store.action_letter("v1", 1, last)
    assert (part["state"], part["failures"]) == ("dead", letters.DEAD_AFTER_FAILURES)
    assert "ImageBroke" in part["error"] and "convert" in part["error"]
    line = broken.__code__.co_firstlineno + 1  # placed where the bug raised, not the wrapper
    assert part["error"].endswith(f"[at test_action_letters_api.py:{line}]")
    proof = await api.store.action_letter("v1", 1, last + 1)
    assert proof["state"] == "dead" and "dead: ImageBroke" in proof["error"]
    assert len(await api.store.image_parts("v1", _id(2))) == last - 1, "kept for a replay"
    # fixed: the image first, then the proof; each once
    monkeypatch.undo()
    _, body = await api.call("POST", f"/api/action-letters/v1/1/{last}/replay", role=A,
                             expect=200)
    assert body["letter"]["state"] == "replayed"
    assert (await api.store.driver_file(_id(2)))["media_type"] == "image/jpeg"
    assert await api.store.image_parts("v1", _id(2)) == []
    _, body = await api.call("POST", f"/api/action-letters/v1/1/{last + 1}/replay", role=A,
                             expect=200)
    assert (body["letter"]["state"], body["letter"]["outcome"]) == ("replayed", "applied")
    _, again = await api.call("POST", f"/api/action-letters/v1/1/{last + 1}/replay", role=A,
                              expect=200)
    assert again == body, "a second replay changes nothing"
    assert [a["key"] for a in await api.store.driver_actions("d1")] == ["tab-0001-k1"]


async def test_the_sweep_drops_images_whose_last_part_is_past_the_age_limit(api):
    data = os.urandom(ip.PART_BYTES + 1)
    t = wall_ms()
    old = ip.split(_id(3), "photo", "a", data, "tab-0001")[0]
    young = ip.split(_id(4), "photo", "a", data, "tab-0001")[0]
    assert await api.actions("v1", _readings([old]), t) == []
    assert await api.actions("v1", _readings([young], 2), t + 1000) == []
    assert await api.actions.sweep(t + ip.STALE_MS) == 0, "not past the limit yet"
    assert await api.actions.sweep(t + ip.STALE_MS + 1) == 1
    assert set(await api.store.open_images("v1")) == {_id(4)}
    assert await api.actions.sweep(t + ip.STALE_MS + 1001) == 1
    assert await api.store.open_images("v1") == {}
