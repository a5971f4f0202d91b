"""The street overlay of the Helsinki extract: what it holds, its cache, its refusals."""

from __future__ import annotations

import json

import pytest

from backend.dispatch.roads import RoadNetworkError
from backend.dispatch.streetmap import cached_street_overlay
from tests.integration.dispatch import helsinki


def test_roads_water_parks_and_buildings_with_names(tmp_path, monkeypatch):
    path = cached_street_overlay(helsinki.extract(), tmp_path)
    data = json.loads(path.read_text())
    assert data["attribution"] == "© OpenStreetMap contributors"  # ODbL
    from backend.mapconfig import map_config

    assert map_config("", "", str(path))["overlay_attribution"] == data["attribution"]
    features = data["features"]
    kinds = {f["properties"]["kind"] for f in features}
    assert kinds == {"road", "path", "water", "park", "building"}
    names = {f["properties"].get("name") for f in features if f["properties"]["kind"] == "road"}
    assert "Erottajankatu" in names  # a street of the extract, tagged oneway=yes, maxspeed 30
    g = helsinki.graph()
    lo, hi = (g.lon.min() - 0.02, g.lat.min() - 0.02), (g.lon.max() + 0.02, g.lat.max() + 0.02)
    for f in features:
        if f["geometry"]["type"] == "LineString":
            for lon, lat in f["geometry"]["coordinates"]:
                assert lo[0] <= lon <= hi[0] and lo[1] <= lat <= hi[1]
    # areas first: roads are drawn over buildings
    order = [f["properties"]["kind"] in ("road", "path") for f in features]
    assert order == sorted(order)

    def no_rebuild(p):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr("backend.dispatch.streetmap.street_overlay", no_rebuild)
    assert cached_street_overlay(helsinki.extract(), tmp_path) == path


def test_not_osm_is_refused(tmp_path):
    bad = tmp_path / "x.osm.pbf"
    bad.write_text("<html>not found</html>")
    with pytest.raises(RoadNetworkError, match="not an OpenStreetMap"):
        cached_street_overlay(bad, tmp_path / "cache")


@pytest.mark.browser
def test_the_web_app_draws_the_streets_of_the_road_network(procs, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.browser import ConsoleErrors, count_pixels, launch, login, screenshot

    procs.api_token("viewer")
    procs.backend("--road-network", str(helsinki.extract()),
                  "--road-cache-dir", str(tmp_path / "roads"))
    with sync_playwright() as p:
        browser = launch(p)
        # Playwright's polling (wait_for_function) evaluates strings, which the app's CSP
        # (no eval) refuses: bypass it for the test's own probes only
        page = browser.new_page(viewport={"width": 1024, "height": 768}, bypass_csp=True)
        errors = ConsoleErrors(page)
        login(page, f"http://127.0.0.1:{procs.http_port}", "test-viewer")
        page.wait_for_function("window.fleetApp && fleetApp.map && fleetApp.map.loaded()",
                               timeout=15000)
        page.evaluate("fleetApp.map.jumpTo({center: [24.944, 60.171], zoom: 15.5})")
        for layer, least in (("overlay-road", 50), ("overlay-building", 50),
                             ("overlay-park", 5)):
            page.wait_for_function(
                f"fleetApp.map.queryRenderedFeatures({{layers: ['{layer}']}}).length >= {least}",
                timeout=15000)
        assert count_pixels(page, "#map", (0xD9, 0xD4, 0xCC)) > 500  # buildings' fill
        assert "OpenStreetMap" in page.inner_text(".maplibregl-ctrl-attrib")
        screenshot(page, tmp_path, "streets")
        browser.close()
    assert not errors, errors
