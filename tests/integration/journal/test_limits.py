"""Size and age limits: the documented drop policy, exact counts, and the events it leaves."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter

import cbor2

from agent import journal_drain, journal_limits
from agent.journal import Journal
from tests.integration.journal.conftest import T0, integrity, pos, sig


def _events(path) -> list[dict]:
    db = sqlite3.connect(path)
    try:
        return [cbor2.loads(p)["data"] for (p,) in db.execute(
            "SELECT payload FROM readings WHERE kind='evt' ORDER BY seq")]
    finally:
        db.close()


def _rows(path) -> list[tuple[int, str, int]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT seq, kind, ts_ms FROM readings ORDER BY seq").fetchall()
    finally:
        db.close()


def test_full_journal_thins_positions_to_one_per_minute_first(jpath):
    j = Journal(jpath, max_mb=0.25, max_age_h=0)
    appended: dict[int, int] = {}  # seq -> ts of every position accepted
    ts = T0
    for _ in range(40):  # 40 batches of 10 Hz positions: 4000 readings, ~1.5× the limit
        batch = [pos(ts := ts + 100) for _ in range(100)]
        seqs = j.append(batch)
        assert len(seqs) >= len(batch), "a live append was refused"
        appended.update(zip(seqs, (r.ts_ms for r in batch), strict=False))
    assert j.used_bytes() <= j.max_bytes + 64 * 1024
    stats = j.stats()
    events = _events(jpath)
    j.close()
    rows = _rows(jpath)
    present = {seq for seq, kind, _ in rows if kind == "pos"}
    missing = set(appended) - present
    assert missing, "the limit never dropped anything"
    assert {e["reason"] for e in events} == {"size-thinned"}
    # every drop is counted, in the stats and in the events sent upstream
    assert stats.dropped == {"pos": len(missing)}
    assert sum(e["counts"]["pos"] for e in events) == len(missing)
    covered = set()
    for e in events:
        for first, last in e["ranges"]:
            covered.update(range(first, last + 1))
    assert missing <= covered
    # thinning keeps one position in every minute that had one: no minute is lost entirely
    minutes_before = {ts // 60_000 for ts in appended.values()}
    minutes_after = {ts // 60_000 for seq, kind, ts in rows if kind == "pos"}
    assert minutes_before == minutes_after
    assert integrity(jpath) == "ok"


def test_when_thinning_is_not_enough_the_oldest_are_dropped(jpath):
    j = Journal(jpath, max_mb=0.25, max_age_h=0)
    ts = T0
    accepted = []
    for i in range(50):
        batch = [sig(ts := ts + 10, rpm=i) for _ in range(100)]
        seqs = j.append(batch)
        accepted.extend(seqs[: len(batch)])
    stats = j.stats()
    j.close()
    rows = _rows(jpath)
    kept = [seq for seq, kind, _ in rows if kind == "can"]
    dropped = sorted(set(accepted) - set(kept))
    assert dropped and stats.dropped == {"can": len(dropped)}
    # drop-oldest: what survives is a contiguous run of the newest readings
    assert kept == [q for q in accepted if q >= kept[0]]
    assert dropped == [q for q in accepted if q < kept[0]]
    events = _events(jpath)
    assert {e["reason"] for e in events} == {"size"}
    assert sum(e["counts"]["can"] for e in events) == len(dropped)
    assert os.path.getsize(jpath) < 0.25 * 1024 * 1024 * 1.5


def test_age_limit_drops_by_device_time_and_reports(jpath):
    now = [1000.0]
    j = Journal(jpath, max_mb=0, max_age_h=1, monotonic=lambda: now[0])
    old = [pos(T0 + i * 1000) for i in range(30)] + [sig(T0 + 31_000)]
    old_seqs = j.append(old)
    # two hours later (device time): the old readings are past the 1 h limit
    now[0] += journal_limits.AGE_CHECK_INTERVAL_S + 1
    new = [pos(T0 + 2 * 3600_000 + i) for i in range(5)]
    seqs = j.append(new)
    assert len(seqs) == 6  # the 5 readings and one journal-dropped event
    stats = j.stats()
    j.close()
    rows = _rows(jpath)
    assert not set(old_seqs) & {seq for seq, _, _ in rows}
    assert stats.dropped == {"pos": 30, "can": 1}
    (event,) = _events(jpath)
    assert event["reason"] == "age"
    assert event["counts"] == {"pos": 30, "can": 1}
    assert event["ranges"] == [[old_seqs[0], old_seqs[-1]]]


def test_age_check_is_rate_limited(jpath):
    now = [1000.0]
    j = Journal(jpath, max_mb=0, max_age_h=1, monotonic=lambda: now[0])
    j.append([pos(T0 + 2 * 3600_000)])  # first check happens here, nothing old yet
    j.append([pos(T0)])  # an old reading arrives, but the next check is a minute away
    j.append([pos(T0 + 2 * 3600_000 + 1)])
    assert j.stats().dropped == {}
    now[0] += journal_limits.AGE_CHECK_INTERVAL_S
    j.append([pos(T0 + 2 * 3600_000 + 2)])
    assert j.stats().dropped == {"pos": 1}
    j.close()


def test_steady_state_file_size_is_bounded_with_acks(jpath):
    """Append and acknowledge for a long time: freed pages are reused, the file stops growing."""
    j = Journal(jpath, max_mb=0)
    ts = T0
    sizes = []
    for cycle in range(300):
        j.append([pos(ts := ts + 100) for _ in range(50)])
        if cycle % 3 == 2:  # the backend acknowledges in bursts, a backlog of ~100 stays
            j.acknowledge(j.next_seq - 100, [])
        sizes.append(sum(os.path.getsize(jpath + s) for s in ("", "-wal")
                         if os.path.exists(jpath + s)))
    j.close()
    assert max(sizes[200:]) <= max(sizes[:100]) * 1.05 + 8192


def test_acked_backlog_is_given_back_in_bounded_steps(jpath, monkeypatch):
    monkeypatch.setattr(journal_drain, "VACUUM_KEEP_PAGES", 16)
    monkeypatch.setattr(journal_drain, "VACUUM_STEP_PAGES", 32)
    j = Journal(jpath, max_mb=0)
    ts = T0
    for _ in range(40):
        j.append([sig(ts := ts + 10) for _ in range(250)])
    db = j._db

    def pages():
        return db.execute("PRAGMA page_count").fetchone()[0]

    before = pages()
    j.acknowledge(j.next_seq - 1, [])
    after_one = pages()
    assert 0 < before - after_one <= 32  # one bounded step, not a full vacuum
    for _ in range(100):
        j.acknowledge(j.next_seq - 1, [])
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    assert free <= 16 and pages() < before / 2
    j.close()


def test_dropped_counts_survive_restart(jpath):
    j = Journal(jpath, max_mb=0.1, max_age_h=0)
    ts = T0
    for _ in range(30):
        j.append([sig(ts := ts + 10) for _ in range(100)])
    dropped = j.stats().dropped
    j.close()
    j2 = Journal(jpath, max_mb=0.1, max_age_h=0)
    assert dropped and j2.stats().dropped == dropped
    j2.close()


def test_event_ranges_are_capped_and_still_cover_everything():
    seqs = list(range(1, 400, 2))  # 200 separate runs
    ranges = journal_limits.seq_ranges(seqs)
    assert len(ranges) == journal_limits.MAX_EVENT_RANGES
    covered = Counter()
    for first, last in ranges:
        for q in range(first, last + 1):
            covered[q] += 1
    assert all(covered[q] == 1 for q in seqs)
