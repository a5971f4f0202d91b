"""Property: the same readings, split into batches delivered in any order and interleaving,
produce the same alerts as in-order delivery (real SQLite; the PostgreSQL store runs the fixed
scenarios of test_engine.py)."""

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.alerts import AlertEngine, parse_rules
from backend.store.base import AlertQuery, StoredReading
from backend.store.sqlite import SqliteStore

DEPOT = {"type": "Polygon", "coordinates": [[[9.98, 53.54], [10.0, 53.54], [10.0, 53.56],
                                              [9.98, 53.56], [9.98, 53.54]]]}
RULES = parse_rules({
    "overspeed": {"limit_kmh": 90, "min_duration_s": 3, "clear_s": 2},
    "geofence": {"dwell_s": 3},
    "signal": [{"name": "coolant-high", "signal": "EngCoolantTemp", "above": 105,
                "duration_s": 2, "clear_s": 1}],
})
VEHICLES = ("truck-1", "truck-2")


@st.composite
def readings(draw):
    out = []
    for vehicle in VEHICLES[:draw(st.integers(1, 2))]:
        n = draw(st.integers(1, 60))
        t = 0
        for seq in range(1, n + 1):
            t += draw(st.sampled_from([0, 500, 1000, 1000, 2000, 4000]))  # repeats, gaps
            kind = draw(st.sampled_from(["pos", "pos", "pos", "can", "evt"]))
            if kind == "pos":
                out.append(StoredReading(
                    vehicle, 1, seq, t, "pos", lat=draw(st.sampled_from([53.55, 53.58])),
                    lon=9.99, speed_kmh=draw(st.sampled_from([40.0, 89.0, 95.0, 130.0])),
                    received_ms=1))
            elif kind == "can":
                out.append(StoredReading(vehicle, 1, seq, t, "can", received_ms=1, data={
                    "EngCoolantTemp": draw(st.sampled_from([90, 104, 106, 120]))}))
            else:
                codes = draw(st.lists(st.sampled_from(["P0301", "P0420", "U0100"]),
                                      max_size=2, unique=True))
                name = draw(st.sampled_from(["dtc", "dtc", "journal-dropped"]))
                data = {"proto": "obd2", "src": draw(st.sampled_from([0x7E8, 0x7E9])),
                        "set": "stored", "dtcs": [{"code": c} for c in codes]} \
                    if name == "dtc" else {"reason": "full", "counts": {"pos": 3}}
                out.append(StoredReading(vehicle, 1, seq, t, "evt", received_ms=1,
                                         data={"name": name, **data}))
    return out


async def _alerts(batches: list[list[StoredReading]]) -> set:
    store = SqliteStore(":memory:")
    await store.open()
    try:
        await store.put_geofence("depot", "Depot", DEPOT)
        engine = AlertEngine(store, RULES, checkpoint_every_ms=5_000)
        await engine.start(0)
        for batch in batches:
            await store.write(batch, [])
            await engine.on_committed(batch, 10**13)
        assert engine.stats["failures"] == 0
        found = await store.list_alerts(AlertQuery(limit=10_000))
        return {(a.rule, a.vehicle_id, a.subject, a.start_ms, a.end_ms, a.peak) for a in found}
    finally:
        await store.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rs=readings(), data=st.data())
def test_any_batching_and_order_gives_the_in_order_alerts(rs, data):
    in_order = sorted(rs, key=lambda r: (r.time_ms, r.epoch, r.seq))
    shuffled = data.draw(st.permutations(rs))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(rs) - 1)), max_size=8)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(rs)], strict=True)]
    # a re-delivered batch (lost ack) somewhere in the stream
    again = data.draw(st.integers(0, len(batches) - 1))
    batches.insert(data.draw(st.integers(again, len(batches))), batches[again])
    expected = asyncio.run(_alerts([in_order]))
    assert asyncio.run(_alerts([b for b in batches if b])) == expected
