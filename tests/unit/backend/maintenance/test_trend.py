"""Predictions without a trained model, on drives from hil/drives.py: a battery whose resting
voltage decays by a known slope is forecast to reach 12.0 V when the slope says (checked
against scipy's Theil–Sen as an independent reference), a steady battery gets no forecast,
and a vehicle running hotter than its peers under the same speed and ambient bands is named."""

from __future__ import annotations

import pytest

from backend.maintenance import health, trend
from backend.maintenance.config import HealthCheck, parse_maintenance
from hil.drives import SIGNALS, DriveBuilder, calm_trip

DAY = 86_400_000
T0 = 1_790_000_000_000 // DAY * DAY  # a midnight
CHECK = trend.TrendCheck(SIGNALS["battery"], 12.0, "below", label="resting battery voltage",
                         unit="V", rest_signal=SIGNALS["rpm"], rest_below=1)


def _days(days: int, slope: float, seed: int = 3, rest_v: float = 12.6) -> DriveBuilder:
    """A vehicle out for a 20-minute trip every morning, parked the rest of the day."""
    b = DriveBuilder(T0, seed=seed, battery_rest_v=rest_v)
    b.battery_slope_v_per_day = slope
    for d in range(days):
        b.park((T0 + d * DAY + 7 * 3_600_000 - b.t_ms) // 1000)
        calm_trip(b, minutes=20)
        b.park((T0 + (d + 1) * DAY - b.t_ms) // 1000)
    return b


def _resting(b: DriveBuilder) -> list[tuple[int, float]]:
    return [(t, x) for t, x, _ in health.condition(
        b.drive.series("battery"), b.drive.series("rpm"),
        HealthCheck(SIGNALS["battery"], rest_signal=SIGNALS["rpm"], rest_below=1))]


def test_a_decaying_battery_is_forecast_to_reach_12_volts_when_its_slope_says():
    slope = -0.03  # V per day: 12.6 → 12.0 in 20 days
    b = _days(14, slope)
    now = b.t_ms
    f = trend.forecast("truck-1", CHECK, _resting(b), now)
    assert f is not None and f["method"] == trend.METHOD
    truth_days = (12.0 - (12.6 + slope * (now - T0) / DAY)) / slope  # 6 days
    assert f["days_to_threshold"] == pytest.approx(truth_days, abs=0.5)
    assert f["slope_per_day"] == pytest.approx(slope, abs=0.003)
    assert f["text"] == f"resting battery voltage reaches 12.0 V in about {round(truth_days)} days"
    # the same line as scipy's Theil–Sen, an independent implementation
    from scipy.stats import theilslopes

    points = trend.daily_medians(_resting(b))
    ref = theilslopes([y for _, y in points], [x for x, _ in points], method="joint")
    ours = trend.theil_sen(points)
    assert ours[0] == pytest.approx(ref.slope, rel=1e-9)
    assert ours[1] == pytest.approx(ref.intercept, abs=1e-6)


def test_a_steady_battery_and_too_few_days_get_no_forecast():
    steady = _days(14, 0.0, seed=5)
    assert trend.forecast("truck-2", CHECK, _resting(steady), steady.t_ms) is None
    short = _days(trend.MIN_DAYS - 1, -0.05)
    assert trend.forecast("truck-3", CHECK, _resting(short), short.t_ms) is None
    # a battery past the threshold already says so
    flat = _days(8, -0.1, rest_v=12.3)
    f = trend.forecast("truck-4", CHECK, _resting(flat), flat.t_ms)
    assert f["days_to_threshold"] == 0.0 and "is past 12.0 V" in f["text"]


def test_config_reads_trends_and_condition_bands():
    cfg = parse_maintenance({
        "trend": [{"signal": "Bat", "threshold": 12.0, "rest_signal": "EngSpeed"}],
        "health": [{"signal": "EngCoolantTemp", "bands": [
            {"signal": "WheelBasedVehicleSpeed", "width": 20},
            {"signal": "AmbientAirTemp", "width": 10}]}]})
    assert cfg.trends[0].threshold == 12.0
    assert cfg.health[0].bands == (("WheelBasedVehicleSpeed", 20.0), ("AmbientAirTemp", 10.0))
    for bad in ({"trend": [{"signal": "x", "threshold": 1, "direction": "sideways"}]},
                {"health": [{"signal": "x", "bands": [{"signal": "s"}]}]},
                {"health": [{"signal": "x", "band_signal": "y",
                             "bands": [{"signal": "s", "width": 1}]}]}):
        with pytest.raises(ValueError):
            parse_maintenance(bad)


def test_the_vehicle_hotter_than_its_peers_under_the_same_conditions_is_named():
    check = HealthCheck(SIGNALS["coolant"], bands=(
        (SIGNALS["speed"], 20.0), (SIGNALS["ambient"], 10.0)), min_samples=20)
    recent: dict[str, dict[str, list[float]]] = {}
    for i, v in enumerate(["a", "b", "c", "d", "e"]):
        b = DriveBuilder(T0, seed=10 + i)
        b.coolant_offset = 7.0 if v == "c" else 0.0
        calm_trip(b, minutes=15)
        conds = {sig: b.drive.series(key) for key, sig in (("speed", SIGNALS["speed"]),
                                                            ("ambient", SIGNALS["ambient"]))}
        for _, value, band in health.condition_bands(b.drive.series("coolant"), conds, check):
            recent.setdefault(v, {}).setdefault(band, []).append(value)
    findings = health.fleet_drift(check, recent)
    drifted = {(f["vehicle"], f["band"]) for f in findings if f["drifted"]}
    assert {v for v, _ in drifted} == {"c"}
    assert ("c", "WheelBasedVehicleSpeed 80..100, AmbientAirTemp 10..20") in drifted
    assert all(f["method"] == health.FLEET_METHOD for f in findings)
