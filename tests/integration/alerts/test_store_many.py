"""The alert state of many vehicles in one call (`alert_checkpoints_before`,
`alert_readings_after`, `alerts_in_windows`, `save_alerts_many`), each vehicle with its own
bound, against the hand-made rows it must return. SQLite and PostgreSQL."""

from backend.alerts.evaluate import Episode
from tests.integration.alerts.helpers import pos
from tests.integration.alerts.test_engine import NOW


def episode(vehicle: str, start_s: int, end_s: int | None) -> Episode:
    return Episode("overspeed", vehicle, start_s * 1000, None if end_s is None else end_s * 1000,
                   peak=120.0, lat=53.5, lon=9.9,
                   decided_ms=(start_s if end_s is None else end_s) * 1000)


async def test_many_vehicles_each_with_its_own_bound(any_store):
    store = any_store
    await store.write([pos(s, s, 50, vehicle=v) for v in ("a", "b", "c") for s in range(1, 11)],
                      [])
    saved = await store.save_alerts_many([
        ([episode("a", 2, 4)], [], ("a", None, [(3_000, {"n": 3}), (6_000, {"n": 6})]), []),
        ([episode("b", 5, None)], [], ("b", None, [(8_000, {"n": 8})]), []),
        ([], [], None, []),
    ], NOW)
    assert [[(a.vehicle_id, a.start_ms, created) for a, created in out] for out in saved] == [
        [("a", 2_000, True)], [("b", 5_000, True)], []]
    assert await store.alert_checkpoints_before([("a", 6_000), ("b", None), ("c", None)]) == {
        "a": (3_000, {"n": 3}), "b": (8_000, {"n": 8})}
    got = await store.alert_readings_after([("a", 8_000), ("b", None), ("c", 9_500)])
    assert {v: [r.seq for r in rows] for v, rows in got.items()} == {
        "a": [9, 10], "b": list(range(1, 11)), "c": [10]}
    # less the runs the caller holds (another epoch, or a vehicle without one: nothing)
    got = await store.alert_readings_after([("a", 8_000), ("b", None), ("c", 9_500)],
                                           {"a": (7, 9, 9), "b": (7, 3, 7), "c": (8, 1, 10)})
    assert {v: [r.seq for r in rows] for v, rows in got.items()} == {
        "a": [10], "b": [1, 2, 8, 9, 10], "c": [10]}
    got = await store.alert_readings_after([("a", None), ("b", 5_000)], {"a": (7, 1, 10)})
    assert {v: [r.seq for r in rows] for v, rows in got.items()} == {"b": [6, 7, 8, 9, 10]}
    windows = await store.alerts_in_windows([("a", 3_000), ("b", 9_000), ("c", None)])
    # a's closed episode was decided at 4 s (after 3 s); b's is open
    assert {v: [a.start_ms for a in alerts] for v, alerts in windows.items()} == {
        "a": [2_000], "b": [5_000]}
    assert await store.alerts_in_windows([("a", 4_000)]) == {}
    # a replay replaces the checkpoints after its base, for each vehicle its own
    await store.save_alerts_many([([], [], ("a", 3_000, [(9_000, {"n": 9})]), []),
                                  ([], [], ("b", 0, []), [])], NOW)
    assert await store.alert_checkpoints_before([("a", None), ("b", None)]) == {
        "a": (9_000, {"n": 9})}
    assert await store.alert_checkpoint("a", 9_000) == (3_000, {"n": 3})
