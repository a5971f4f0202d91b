"""The replication alarm (backend/dbwatch.py): fed snapshots as the PostgreSQL store's
`replication()` gives them."""

from backend.dbwatch import ReplicationWatch


def snap(sync: int, names: str, primary: bool = True) -> dict:
    return {"primary": primary, "standbys": sync, "sync_standbys": sync,
            "synchronous_standby_names": names, "synchronous_commit": "remote_apply"}


def test_a_single_server_never_alarms():
    w = ReplicationWatch()
    assert w.observe(snap(0, "")) is None and w.alarm is None


def test_fall_back_to_asynchronous_and_back():
    w = ReplicationWatch()
    assert w.observe(snap(1, '"pg2"')) is None
    msg = w.observe(snap(0, ""))  # Patroni emptied synchronous_standby_names
    assert w.alarm == "async" and "one server" in msg
    assert w.observe(snap(0, "")) is None  # logged once
    assert w.observe(snap(1, '"pg2"')) and w.alarm is None


def test_named_standby_missing_means_commits_wait():
    w = ReplicationWatch()
    assert w.observe(snap(0, '"pg2"')) and w.alarm == "stalled"


def test_a_standby_answering_raises_nothing():
    w = ReplicationWatch()
    w.observe(snap(1, '"pg2"'))
    w.observe(snap(0, "", primary=False))
    assert w.alarm is None and w.status()["replication"]["primary"] is False
