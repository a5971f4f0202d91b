"""Detections from the vehicle (backend/dispatch/onboard.py): what the agent writes is taken,
anything else refused with the field named; a revision-2 backend's applier refuses them."""

import pytest

from agent.stops import VehicleStops
from backend.dispatch.onboard import DetectionRefused, is_detection, parse_detection
from backend.driver.actions import ActionRefused, parse_action
from tests.unit.agent.test_stops import ROUTE, drive


def detections() -> list[dict]:
    return [a.action for a in VehicleStops({"r1": ROUTE}).feed(drive())]


def test_the_agents_detections_parse():
    arrival, departure = (parse_detection(d) for d in detections())
    assert (arrival.kind, arrival.route_id, arrival.job_id) == ("arrival-detected", "r1", "a")
    assert arrival.at_ms < arrival.decided_ms < departure.at_ms
    assert all(is_detection(d) for d in detections())
    assert not is_detection({"kind": "arrive"}) and not is_detection([])


@pytest.mark.parametrize("change, field", [
    ({"extra": 1}, "unknown field"), ({"key": "short"}, "key"), ({"job_id": "a b"}, "job_id"),
    ({"route_id": 7}, "route_id"), ({"at_ms": -1}, "at_ms"), ({"at_ms": True}, "at_ms"),
    ({"decided_ms": 2**60}, "decided_ms"), ({"lat": 91}, "lat"),
    ({"lon": float("inf")}, "lat, lon"), ({"lat": None}, "lat"),
])
def test_hostile_bodies_are_refused(change, field):
    body = {**detections()[0], **change}
    with pytest.raises(DetectionRefused, match=field):
        parse_detection(body)


def test_a_revision_2_applier_refuses_a_detection_clearly():
    with pytest.raises(ActionRefused, match="unknown field"):
        parse_action(detections()[0])
