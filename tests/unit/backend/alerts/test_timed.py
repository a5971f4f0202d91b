"""The clock-driven rules (backend/alerts/timed.py) decide as looking at every vehicle one by
one in order does: the same changes, in the same order, and the same connection times, for
any fleet, readings, connections and open alerts."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.alerts.evaluate import Episode
from backend.alerts.rules import OfflineRule, StaleRule
from backend.alerts.timed import closed, offline_changes, stale_changes
from backend.store.base import StoredAlert

NOW = 10_000_000
NAMES = [f"v{i}" for i in range(12)]


def _stale_one_by_one(stale, now_ms, seen, positions, timed):
    """The reference: every vehicle in order."""
    changes = []
    for vehicle, last in sorted(seen.items()):
        open_ = timed.get(("stale", vehicle))
        if open_ is not None:
            if last > open_.detail.get("last_reading_ms", last):
                changes.append(closed(open_, max(open_.start_ms, last), last))
            continue
        _, speed, lat, lon = positions.get(vehicle, (0, None, None, None))
        parked = speed is not None and speed < stale.parked_kmh
        if not parked and now_ms - last >= stale.after_s * 1000:
            start = last + round(stale.after_s * 1000)
            changes.append(Episode("stale", vehicle, start, None, "", None, lat, lon,
                                   {"last_reading_ms": last}, start))
    return changes


def _offline_one_by_one(offline, now_ms, vehicles, connected, connected_ms, started_ms,
                        positions, timed):
    changes = []
    for vehicle in sorted(vehicles):
        open_ = timed.get(("offline", vehicle))
        if vehicle in connected:
            connected_ms[vehicle] = now_ms
            if open_ is not None:
                changes.append(closed(open_, now_ms, now_ms))
            continue
        since = connected_ms.get(vehicle, started_ms)
        if open_ is None and now_ms - since >= offline.after_s * 1000:
            start = since + round(offline.after_s * 1000)
            _, _, lat, lon = positions.get(vehicle, (0, None, None, None))
            changes.append(Episode("offline", vehicle, start, None, "", None, lat, lon,
                                   {"last_connected_ms": connected_ms.get(vehicle)}, start))
    return changes


def _alert(i: int, rule: str, vehicle: str, last: int) -> StoredAlert:
    return StoredAlert(i, rule, vehicle, "", NOW - 900_000, None, None, "open", 53.5, 10.0,
                       {"last_reading_ms": last}, NOW - 900_000, None, None)


times = st.sampled_from([NOW - 10**6, NOW - 300_001, NOW - 300_000, NOW - 299_999, NOW - 1000,
                         NOW])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True, database=None)
@given(seen=st.dictionaries(st.sampled_from(NAMES), times),
       speeds=st.dictionaries(st.sampled_from(NAMES), st.sampled_from([None, 0.0, 2.9, 3.0, 50.0])),
       known=st.sets(st.sampled_from(NAMES)), connected=st.sets(st.sampled_from(NAMES)),
       since=st.dictionaries(st.sampled_from(NAMES), times),
       open_stale=st.dictionaries(st.sampled_from(NAMES), times),
       open_offline=st.sets(st.sampled_from(NAMES)), after_s=st.sampled_from([0.0, 0.5, 300.0]))
def test_the_rules_decide_as_one_vehicle_after_another(seen, speeds, known, connected, since,
                                                        open_stale, open_offline, after_s):
    positions = {v: (seen.get(v, 0), s, 53.5, 10.0) for v, s in speeds.items()}
    timed = {("stale", v): _alert(i, "stale", v, last)
             for i, (v, last) in enumerate(sorted(open_stale.items()))}
    timed.update({("offline", v): _alert(100 + i, "offline", v, 0)
                  for i, v in enumerate(sorted(open_offline))})
    stale, offline = StaleRule(after_s=after_s), OfflineRule(after_s=after_s)
    assert (stale_changes(stale, NOW, seen, positions, timed)
            == _stale_one_by_one(stale, NOW, seen, positions, timed))
    vehicles = known | connected
    mine, reference = dict(since), dict(since)
    assert (offline_changes(offline, NOW, vehicles, connected, mine, NOW - 700_000, positions,
                            timed)
            == _offline_one_by_one(offline, NOW, vehicles, connected, reference,
                                   NOW - 700_000, positions, timed))
    assert mine == reference
    assert offline_changes(offline, NOW, sorted(vehicles), connected, dict(since), 0,
                           positions, timed) == offline_changes(
        offline, NOW, vehicles, connected, dict(since), 0, positions, timed)
    assert stale_changes(None, NOW, seen, positions, timed) == []
    assert offline_changes(None, NOW, vehicles, connected, {}, 0, positions, timed) == []
