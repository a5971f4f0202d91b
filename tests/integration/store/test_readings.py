"""The write path on every store (SQLite, PostgreSQL with native partitions, PostgreSQL with a
TimescaleDB hypertable: `any_store`): exactly once, the newest position and signals never go
backwards, dead letters."""

from backend.store.base import DeadLetter, StoredReading

T0 = 1_763_900_000_000  # 2025-11-23


def pos(seq, t, vehicle="v1", epoch=7, lat=52.0, lon=13.0, **kw):
    return StoredReading(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=t, kind="pos",
                         lat=lat, lon=lon, speed_kmh=kw.get("speed", 10.0), course_deg=90.0,
                         fix=1, sats=kw.get("sats", 8), received_ms=t + 5)


async def test_duplicate_batches_store_each_reading_once(any_store):
    store = any_store
    batch = [pos(i, T0 + i * 1000) for i in range(1, 101)]
    await store.write(batch, [])
    await store.write(batch, [])            # the whole batch again (lost ack)
    await store.write(batch[40:60] + [pos(101, T0 + 101_000)], [])  # overlap + one new
    assert await store.count_readings("v1") == 101
    route = await store.route("v1", T0, T0 + 200_000)
    assert [p["seq"] for p in route] == list(range(1, 102))
    assert route[0]["time_ms"] == T0 + 1000 and route[0]["lat"] == 52.0


async def test_last_position_never_moves_backwards(any_store):
    store = any_store
    await store.write([pos(10, T0 + 10_000, lat=1.0)], [])
    await store.write([pos(3, T0 + 3_000, lat=2.0), pos(4, T0 + 4_000, lat=3.0)], [])  # backfill
    [last] = await store.last_positions()
    assert (last["seq"], last["lat"], last["time_ms"]) == (10, 1.0, T0 + 10_000)
    await store.write([pos(11, T0 + 11_000, lat=4.0), pos(5, T0 + 5_000, lat=5.0)], [])
    [last] = await store.last_positions()
    assert (last["seq"], last["lat"]) == (11, 4.0)


async def test_dead_letters_and_signals(any_store):
    store = any_store
    can = StoredReading(vehicle_id="v1", epoch=7, seq=5, time_ms=T0, kind="can",
                        data={"bus": "can0", "rpm": 1800}, received_ms=T0)
    dead = DeadLetter("v1", 7, 6, {"q": 6, "k": "pos", "lat": 999}, "out of range", T0)
    await store.write([can], [dead])
    await store.write([can], [dead])
    assert await store.count_readings() == 1
    letters = await store.dead_letters()
    assert len(letters) == 1 and letters[0]["error"] == "out of range"
    assert letters[0]["reading"]["lat"] == 999


def can(seq, t, vehicle, epoch=7, **signals):
    return StoredReading(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=t, kind="can",
                         data={"bus": "can0", **signals}, received_ms=t + 5)


async def test_group_commit_of_many_vehicles_stores_once_and_keeps_the_newest(any_store):
    """One writer transaction holding several vehicles' batches (a storm drain): re-sent
    readings stored once, and each vehicle's newest position and signal values as a
    brute-force pass over everything written says, whatever order the batches came in."""
    store = any_store
    import random

    rng = random.Random(5)
    written: list[StoredReading] = []
    for round_ in range(4):
        group = []
        for v in ("a", "b", "c"):
            for seq in rng.sample(range(1, 61), 25):  # out of order, overlapping rounds
                t = T0 + seq * 1000
                r = (pos(seq, t, vehicle=v, lat=seq / 10, speed=float(round_)) if seq % 3
                     else can(seq, t, v, rpm=seq * 10, temp=seq if seq % 2 else None))
                group.append(r)
        if round_ == 2:
            group += group[:10]  # the same readings twice in one transaction
        await store.write(group, [])
        written += group
    distinct = {(r.vehicle_id, r.epoch, r.seq) for r in written}
    assert await store.count_readings() == len(distinct)
    newest_pos = {}
    for r in sorted((r for r in written if r.kind == "pos"), key=lambda r: r.time_ms):
        newest_pos[r.vehicle_id] = r
    got = {p["vehicle_id"]: (p["seq"], p["lat"], p["time_ms"])
           for p in await store.last_positions()}
    assert got == {v: (r.seq, r.lat, r.time_ms) for v, r in newest_pos.items()}
    newest_sig: dict = {}
    for r in sorted((r for r in written if r.kind == "can"), key=lambda r: r.time_ms):
        for k, value in r.data.items():
            if k != "bus":
                newest_sig.setdefault(r.vehicle_id, {})[k] = {"value": value, "time_ms": r.time_ms}
    assert await store.last_signals() == newest_sig


async def test_signals_merge_value_by_value_whatever_order_they_come_in(any_store):
    """Each CAN signal keeps its own newest value: a snapshot older than some stored values
    and newer than others moves only the older ones forward, a signal seen once stays, an
    equal time keeps the value stored first, and values of any JSON type survive."""
    store = any_store
    await store.write([can(5, T0 + 5_000, "v1", rpm=1500, temp=80.5, gear="D")], [])
    await store.write([can(3, T0 + 3_000, "v1", rpm=900, fuel=40, temp=70.0)], [])  # backfill
    await store.write([can(6, T0 + 6_000, "v1", rpm=1600),
                       can(4, T0 + 4_000, "v1", fuel=41, door=None)], [])
    await store.write([can(7, T0 + 6_000, "v1", rpm=1700, temp=81.0)], [])  # rpm: same time
    assert await store.last_signals() == {"v1": {
        "rpm": {"value": 1600, "time_ms": T0 + 6_000},
        "temp": {"value": 81.0, "time_ms": T0 + 6_000},
        "gear": {"value": "D", "time_ms": T0 + 5_000},
        "fuel": {"value": 41, "time_ms": T0 + 4_000},
        "door": {"value": None, "time_ms": T0 + 4_000}}}
