"""A backend without the `planning` extra (the Debian package): no planner (the API's 503),
and the road network ignored rather than a crash at the first live route."""

from backend import service
from backend.config import BackendConfig


def test_without_the_extra_there_is_no_planner_and_no_road_network(monkeypatch, tmp_path):
    extract = tmp_path / "region.osm.pbf"
    extract.write_bytes(b"not read")
    config = BackendConfig(road_network=str(extract))
    assert service.missing_planning_modules() == []  # `make` installs the extra
    assert service._roads(config) == extract
    monkeypatch.setattr(service, "PLANNING_MODULES",
                        (*service.PLANNING_MODULES, "fleet_no_such_solver"))
    assert service.missing_planning_modules() == ["fleet_no_such_solver"]
    assert service._roads(config) is None
    assert service.planning_service(config, store=None, dispatch=None) is None
    assert service.street_overlay(config) == ""
