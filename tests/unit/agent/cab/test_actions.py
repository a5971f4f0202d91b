"""The in-cab tablet's actions at the agent's edge (agent/cab/actions.py) and the mailbox's
route as the app's shift (agent/cab/shift.py)."""

from __future__ import annotations

import pytest

from agent.cab.actions import KeyUsed, NotAnAction, check, decide, named_images
from agent.cab.shift import SHIFT_MARGIN_MS, shift_answer


def action(**over) -> dict:
    return {"key": "tab-1:000001", "device_id": "tablet-1", "device_seq": 1,
            "kind": "complete", "job_id": "a", "route_id": "r1",
            "pod": {"recipient": "Ana", "notes": "", "signature": "f" + "0" * 40,
                    "photos": ["f" + "1" * 40]}} | over


def recorded(a):
    return {"key": a.key, "device_id": a.device_id, "device_seq": a.device_seq,
            "digest": a.digest}


def test_the_images_an_action_names():
    assert named_images(action()) == ["f" + "1" * 40, "f" + "0" * 40]
    assert named_images(action(pod={"recipient": "Ana", "signature": None})) == []
    assert named_images(action(pod={"photos": "x", "signature": 5})) == []
    assert named_images({"kind": "arrive"}) == []


def test_the_journaled_action_keeps_its_image_ids():
    """The images travel before it as parts (docs/protocol.md §4 "Images"): the action
    names them, as the app sent it."""
    a = check(action())
    assert a.journaled == action()
    assert a.journaled["pod"]["photos"] == ["f" + "1" * 40]


@pytest.mark.parametrize("body", [
    [], "x", action(key="short"), action(device_id="with space!"), action(device_seq=0),
    action(device_seq=True), action(device_seq=2**53), action(kind=""), action(kind="k" * 33),
    action(job_id=5), action(pod={"a": {"b": {"c": {"d": 1}}}}),
])
def test_not_actions_are_refused(body):
    with pytest.raises(NotAnAction):
        check(body)


def test_same_key_same_body_is_a_resend_other_body_or_seq_is_409():
    first = check(action())
    assert decide(first, None) is True
    assert decide(check(action()), recorded(first)) is False
    with pytest.raises(KeyUsed, match="another action"):
        decide(check(action(kind="fail", reason="x")), recorded(first))
    other_key = check(action(key="tab-1:000099"))
    with pytest.raises(KeyUsed, match="sequence"):
        decide(other_key, recorded(first))


def route(rid, status, start, stops=("a",)):
    return {"route_id": rid, "version": 1, "status": status, "driver_id": "d1",
            "shift": {"start_ms": start, "end_ms": start + 8 * 3600_000},
            "stops": [{"job_id": j, "name": j.upper(), "address": f"{j} street", "lat": 60.0,
                       "lon": 24.0, "windows": [], "service_s": 60, "notes": "",
                       "contact": {}, "arrival_ms": start + 1000} for j in stops]}


def test_the_shift_is_the_route_whose_shift_holds_now_active_first():
    now = 10 * 3600_000
    routes = [route("later", "dispatched", now + SHIFT_MARGIN_MS + 1),
              route("today", "dispatched", now - 3600_000, ("a", "b")),
              route("live", "active", now - 3600_000, ("c",))]
    body = shift_answer(routes, {"c": "arrived"}, "v1", now)
    assert body["route"]["id"] == "live" and body["route"]["vehicle_id"] == "v1"
    [stop] = body["stops"]
    assert (stop["id"], stop["state"], stop["place"]["address"]) == ("c", "arrived",
                                                                     "c street")
    body = shift_answer(routes[:2], {}, "v1", now)
    assert body["route"]["id"] == "today"
    assert [s["state"] for s in body["stops"]] == ["assigned", "assigned"]
    assert shift_answer(routes[:1], {}, "v1", now)["route"] is None
