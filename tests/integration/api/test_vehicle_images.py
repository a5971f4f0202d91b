"""Proof-of-delivery images through a vehicle's journal (docs/protocol.md §4 "Images"): the
gateway's applier assembles a vehicle's image parts once, re-encoded, into the driver files the
dispatcher's API serves, and dead-letters hostile part sequences without holding anything of
them or stalling another vehicle. Both stores."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from backend.driver.applier import ActionApplier
from backend.hub import Hub
from backend.store.rows import StoredReading
from backend.vehicle_actions import VehicleActions
from geostream import image_parts as ip
from geostream.clock import wall_ms
from tests.integration.api.apphelp import Api

D = "dispatcher"
H = 3_600_000


@pytest.fixture
async def api(store_url):
    async with Api(store_url, hub=Hub()) as api:
        now = wall_ms()
        for v in ("v1", "v2"):
            await api.store.add_vehicle(v)
        await api.call("POST", "/api/jobs/import", role=D, expect=200,
                       csv="id,lat,lon\na,60.17,24.94\nb,60.18,24.95\n")
        for route, vehicle, job, driver in (("r1", "v1", "a", "d1"), ("r2", "v2", "b", "d2")):
            await api.call("PUT", f"/api/routes/{route}", role=D, expect=201, body={
                "vehicle_id": vehicle, "shift": {"start_ms": now - H, "end_ms": now + 7 * H},
                "start_depot": "dep", "stops": [{"job_id": job}], "status": "dispatched",
                "driver_id": driver})
        yield api


def _photo_with_gps() -> bytes:
    """A noisy JPEG (several parts) carrying EXIF GPS, as a phone's camera makes it."""
    im = Image.frombytes("RGB", (320, 240), os.urandom(320 * 240 * 3))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (60.0, 10.0, 1.5), 3: "E", 4: (24.0, 56.0, 2.5)}
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, exif=exif.tobytes())
    raw = out.getvalue()
    assert Image.open(io.BytesIO(raw)).getexif().get_ifd(0x8825)
    return raw


def _readings(vehicle: str, actions: list[dict], first_seq: int = 1) -> list[StoredReading]:
    return [StoredReading(vehicle, 1, q, wall_ms(), "act", data=a)
            for q, a in enumerate(actions, first_seq)]


def _id(n: int) -> str:
    return "f" + f"{n:x}".rjust(40, "0")


async def test_parts_then_the_action_store_the_image_once_reencoded(api):
    raw = _photo_with_gps()
    parts = ip.split(_id(1), "photo", "a", raw, "tab-0001")
    assert len(parts) >= 3
    act = {"key": "tab-0001-k1", "device_id": "tab-0001", "device_seq": 1,
           "kind": "complete", "job_id": "a", "route_id": "r1",
           "pod": {"recipient": "Aino", "photos": [_id(1)], "signature": None}}
    actions = VehicleActions(ActionApplier(api.store))
    readings = _readings("v1", [*parts, act])
    # the journal's batches: a few parts each, the action after the last part
    for batch in (readings[:2], readings[2:]):
        assert await actions("v1", batch, wall_ms()) == []
    # the whole journal again (a lost ack): nothing new happens
    assert await actions("v1", readings, wall_ms()) == []
    assert (actions.images, actions.applied, actions.kept) == (1, 1, 0)
    assert (await api.store.driver_action("tab-0001-k1"))["outcome"] == "applied"
    assert await api.store.image_parts("v1", _id(1)) == []
    _, served = await api.call("GET", f"/api/pod-files/{_id(1)}", role=D, expect=200)
    back = Image.open(io.BytesIO(served))
    assert back.format == "JPEG" and not back.getexif() and served != raw


async def _hostile(api, actions, parts: list[dict], seq: int = 1) -> list:
    return await actions("v1", _readings("v1", parts, seq), wall_ms())


async def test_hostile_part_sequences_are_dead_letters_and_hold_nothing(api):
    actions = VehicleActions(ActionApplier(api.store))
    data = os.urandom(ip.PART_BYTES * 2 + 10)
    # the same part twice with other bytes: the second is refused, what was held dropped
    first = ip.split(_id(2), "photo", "a", data, "tab-0001")
    forged = ip.split(_id(2), "photo", "a", os.urandom(len(data)), "tab-0001")
    for p in forged:  # the same header, other bytes
        p["image"]["sha256"] = first[0]["image"]["sha256"]
    dead = await _hostile(api, actions, [first[0], forged[0]])
    assert [q for q, _ in dead] == [2] and "different bytes" in dead[0][1]
    assert await api.store.image_parts("v1", _id(2)) == []
    # a part that disagrees with the held parts' header
    other = ip.split(_id(3), "photo", "a", data + b"x", "tab-0001")
    dead = await _hostile(api, actions, [ip.split(_id(3), "photo", "a", data, "tab-0001")[0],
                                         other[1]], 10)
    assert [q for q, _ in dead] == [11] and "disagrees" in dead[0][1]
    # every part present but the hash does not match: refused when it completes
    bad = ip.split(_id(4), "photo", "a", data, "tab-0001")
    for p in bad:
        p["image"]["sha256"] = "0" * 64
    dead = await _hostile(api, actions, bad, 20)
    assert [q for q, _ in dead] == [22] and "sha256" in dead[0][1]
    assert await api.store.image_parts("v1", _id(4)) == []
    # bytes that hash right but are no image
    dead = await _hostile(api, actions, ip.split(_id(5), "photo", "a", data, "tab-0001"), 30)
    assert [q for q, _ in dead] == [32] and "not a JPEG" in dead[0][1]
    # a malformed part (count beyond the bound)
    broken = ip.split(_id(6), "photo", "a", b"\xff\xd8\xff", "tab-0001")[0]
    broken["image"]["count"] = ip.MAX_PARTS + 1
    dead = await _hostile(api, actions, [broken], 40)
    assert [q for q, _ in dead] == [40] and "image.count" in dead[0][1]
    assert actions.images == 0
    for n in (2, 3, 4, 5, 6):
        assert await api.store.driver_file(_id(n)) is None
    # meanwhile another vehicle's image is assembled as usual
    sig = io.BytesIO()
    Image.new("L", (300, 100), 255).save(sig, "PNG")
    parts = ip.split(_id(7), "signature", "b", sig.getvalue(), "tab-0002")
    assert await actions("v2", _readings("v2", parts), wall_ms()) == []
    stored = await api.store.driver_file(_id(7))
    assert (stored["driver_id"], stored["vehicle_id"], stored["media_type"]) == (
        "d2", "v2", "image/png")


async def test_an_action_naming_an_image_that_never_came_is_kept(api):
    actions = VehicleActions(ActionApplier(api.store))
    act = {"key": "tab-0001-k9", "device_id": "tab-0001", "device_seq": 9,
           "kind": "complete", "job_id": "a", "route_id": "r1",
           "pod": {"recipient": "Aino", "photos": [_id(8)], "signature": None}}
    assert await actions("v1", _readings("v1", [act]), wall_ms()) == []
    assert (actions.applied, actions.kept) == (0, 1)
    letter = await api.store.action_letter("v1", 1, 1)  # for an admin to see, with the reason
    assert letter["state"] == "dead" and f"upload these images first: {_id(8)}" in letter["error"]


async def test_a_vehicle_holds_a_bounded_number_of_half_images(api, monkeypatch):
    monkeypatch.setattr(ip, "MAX_OPEN_IMAGES", 2)
    actions = VehicleActions(ActionApplier(api.store))
    data = os.urandom(ip.PART_BYTES + 1)
    firsts = [ip.split(_id(n), "photo", "a", data, "tab-0001")[0] for n in (10, 11, 12)]
    dead = await actions("v1", _readings("v1", firsts), wall_ms())
    assert [q for q, _ in dead] == [3] and "being assembled" in dead[0][1]
    assert set(await api.store.open_images("v1")) == {_id(10), _id(11)}
    assert await api.store.open_images("v2") == {}
