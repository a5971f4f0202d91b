"""The pure rules of the agent's commands (agent/commands.py), its command record
(agent/command_log.py, real SQLite) and config.set's rollback decision (agent/rollback.py)."""

from __future__ import annotations

import sqlite3

import pytest

from agent import rollback
from agent.command_log import CommandLog, Record
from agent.commands import INTERRUPTED, Answer, bounded, refusal, replay
from agent.mailbox import Mailbox
from agent.rollback import KEEP, PROBE, ROLL_BACK, WAIT, PendingChange, RollbackWatch
from agent.vehicle_db import open_vehicle_db
from geostream.commands import MAX_RESULT_BYTES
from geostream.messages import Command


@pytest.fixture
def db(tmp_path):
    conn = open_vehicle_db(str(tmp_path / "journal.sqlite"))
    yield conn
    conn.close()


def test_refusal_before_running():
    known = {"ping", "restart"}
    assert refusal(Command(1, "ping", {}), known) is None
    assert "unsupported" in refusal(Command(2, "obd.query", {"bus": "a", "pid": 1}),
                                    known).detail
    assert not refusal(Command(3, "restart", {"reason": 5}), known).ok


def test_a_repeat_is_answered_from_the_record_and_an_interrupted_one_never_runs_again():
    answered = Record(1, "dtc.clear", 10, answered_ms=11, ok=True, detail="sent", result=None)
    assert replay(answered) == Answer(True, "sent")
    assert replay(Record(2, "restart", 10)) == Answer(True, "restarted")
    assert replay(Record(3, "dtc.clear", 10)) == Answer(False, INTERRUPTED)


def test_an_answer_too_large_for_the_wire_says_so():
    assert bounded(Answer(True, "x" * 300)).detail == "x" * 256
    big = bounded(Answer(True, "ok", {"blob": ["y" * 1000] * 20}))
    assert not big.ok and str(MAX_RESULT_BYTES) in big.detail


def test_the_record_survives_reopening_and_keeps_a_bounded_history(tmp_path, db,
                                                                    monkeypatch):
    monkeypatch.setattr("agent.command_log.COMMAND_RECORD_ROWS", 8)  # fewer fsyncs
    log = CommandLog(db)
    log.begin(5, "restart", {"reason": "x"}, 100)
    with pytest.raises(sqlite3.IntegrityError):
        log.begin(5, "restart", {}, 101)  # one record per id: never begun twice
    again = CommandLog(open_vehicle_db(str(tmp_path / "journal.sqlite")))
    assert again.lookup(5) == Record(5, "restart", 100)
    log.finish(5, True, "restarted", {"a": 1}, 200)
    assert again.lookup(5) == Record(5, "restart", 100, 200, True, "restarted", {"a": 1})
    for i in range(6, 6 + 8 + 10):
        log.begin(i, "ping", {}, i)
    assert db.execute("SELECT count(*) FROM command_log").fetchone()[0] == 8
    assert log.lookup(5) is None and log.lookup(6 + 8 + 9) is not None


def test_the_mailbox_keeps_the_newest_route_version(db):
    box = Mailbox(db)
    assert box.set_route({"route_id": "r1", "version": 3, "stops": []}, 1) == (True, 3)
    assert box.set_route({"route_id": "r1", "version": 2, "stops": [1]}, 2) == (False, 3)
    assert box.routes() == [{"route_id": "r1", "version": 3, "stops": []}]
    with pytest.raises(ValueError):
        box.set_route({"version": 1}, 3)
    box.add_message(4, "hi", "d", 5)
    box.add_message(4, "hi again", "d", 6)  # a repeat of message 4 changes nothing
    assert [m["text"] for m in box.messages()] == ["hi"]


def change(confirm_s: float = 60) -> PendingChange:
    return PendingChange(command_id=7, previous_text="old", confirm_s=confirm_s)


def test_a_change_that_reaches_the_backend_is_kept_whatever_comes_after():
    w = RollbackWatch(change(), now=0)
    assert w.tick(30) is None
    assert w.reached_backend() == KEEP
    assert w.tick(1000) is None  # a tunnel after confirmation: nothing to decide
    assert w.probe_done(True, 1000) is None and w.pending is None


def test_unconfirmed_after_the_window_the_previous_configuration_decides():
    w = RollbackWatch(change(60), now=0)
    assert w.tick(59) is None
    assert w.tick(60) == PROBE
    assert w.tick(120) is None, "one probe at a time"
    # the previous configuration cannot reach the gateway either: a tunnel, wait again
    assert w.probe_done(False, 121) == WAIT
    assert w.pending.run_s == 0 and w.pending.windows == 1
    assert w.tick(180) is None
    assert w.tick(181) == PROBE
    # now the previous one reaches it while the new one still does not: broken, roll back
    assert w.probe_done(True, 182) == ROLL_BACK
    assert w.pending is None


def test_running_time_survives_a_power_cut_and_the_clock_does_not_count(db):
    w = RollbackWatch(change(60), now=1000)
    w.tick(1040)  # 40 s of running
    rollback.save(db, w.pending)
    # power cut; the monotonic clock starts again near zero, hours later on the wall clock
    restored = rollback.load(db)
    assert restored.run_s == 40
    w2 = RollbackWatch(restored, now=3)
    assert w2.tick(22) is None  # 59 s of running in all
    assert w2.tick(23) == PROBE
    rollback.save(db, None)
    assert rollback.load(db) is None


async def test_what_a_command_does_after_its_answer_runs_once_the_answer_is_recorded(tmp_path):
    """config.set's restart stops the agent: requested before the answer is recorded, the
    stop could cut the recording short and its repeat would read "interrupted". `then` runs
    only after the record holds the answer."""
    from agent.command_runner import CommandRunner

    path = str(tmp_path / "journal.sqlite")
    seen: list[Record | None] = []

    def after() -> None:
        conn = open_vehicle_db(path)
        try:
            seen.append(CommandLog(conn).lookup(7))
        finally:
            conn.close()

    async def change(args: dict) -> Answer:
        return Answer(True, "applied; restarting for server", then=after)

    runner = CommandRunner(path, {"config.set": change})
    try:
        answer = await runner.run(Command(7, "config.set", {"toml": "[log]\n"}))
    finally:
        runner.close()
    assert (answer.ok, answer.detail) == (True, "applied; restarting for server")
    [record] = seen
    assert record is not None and record.answered_ms is not None and record.ok
    assert replay(record) == Answer(True, "applied; restarting for server")
