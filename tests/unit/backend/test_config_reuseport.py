"""`reuseport` N (backend/cluster/workers.py): what N gateway processes on one port need is
checked at start, with a reason."""

import pytest

from backend.cluster.workers import parse_worker_flag
from backend.config import BackendConfig

PG = dict(db="postgresql://fleet@db/fleet", nats_url="nats://127.0.0.1:4222",
          quic_library="aioquic")


def test_one_process_needs_nothing_more():
    assert BackendConfig(reuseport=0).reuseport == 0
    assert BackendConfig(reuseport=1, db="sqlite:///x.db").reuseport == 1
    assert BackendConfig(reuseport=2, **PG).reuseport == 2


@pytest.mark.parametrize("value", [-1, 65, True, "2", 2.0])
def test_out_of_range_or_not_an_integer(value):
    with pytest.raises(ValueError, match="reuseport must be within 0..64"):
        BackendConfig(reuseport=value, **PG)


@pytest.mark.parametrize("change, reason", [
    (dict(db="sqlite:///x.db"), "SQLite allows one writer process"),
    (dict(nats_url=""), "needs nats_url"),
    (dict(server_id=1, router="127.0.0.1:7000", cluster_key_file="k"), "exclude each other"),
])
def test_several_processes_refuse_what_they_cannot_share(change, reason):
    with pytest.raises(ValueError, match=reason):
        BackendConfig(reuseport=2, **{**PG, **change})


def test_the_workers_run_qh3_by_default_and_relay_its_cids():
    """qh3 is allowed (and the default) on --reuseport workers: they relay the CIDs its core
    draws without the server id (backend/cluster/relay.py)."""
    cfg = {**PG, "quic_library": ""}
    assert BackendConfig(reuseport=2, **cfg).gateway_quic_library() == "qh3"
    assert BackendConfig(reuseport=2, **{**PG, "quic_library": "qh3"}).reuseport == 2


def test_the_worker_flag():
    assert parse_worker_flag("1:7") == (1, 7, 0, {})
    assert parse_worker_flag("1:7:3:9,-,11") == (1, 7, 3, {0: 9, 2: 11})
    for bad in ("1", "a:7", "1:", "-1:3", "1:7:3:9,10,11", "1:7:2:9", "3:7:3:9,10,-",
                "1:7:3:9,-", "0:7:2:-,x", "1:7:2"):
        with pytest.raises(ValueError, match="SERVER_ID:FD"):
            parse_worker_flag(bad)


def test_the_workers_share_their_session_tickets_in_the_database():
    assert BackendConfig(reuseport=2, **PG).ticket_path() == PG["db"]
    assert BackendConfig(reuseport=2, ticket_file="/t.sqlite", **PG).ticket_path() == "/t.sqlite"
    assert BackendConfig(reuseport=1, **PG).ticket_path() != PG["db"]
