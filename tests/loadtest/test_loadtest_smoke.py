"""Short runs of the load tester (python -m loadtest): real gateway processes, real
aioquic clients, real stores; the store must hold every reading made exactly once."""

import pytest

from loadtest.run import Options, run


def check(rep, vehicles):
    assert rep.connected == vehicles
    assert rep.made >= vehicles * 5                  # the run did produce readings
    assert rep.stored == rep.made                    # checked with SQL against the store
    assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
    assert rep.ack_p50_ms is not None and rep.acked_per_s > 0


def test_smoke_50_vehicles_sqlite(tmp_path):
    rep = run(Options(vehicles=50, rate_hz=1.0, duration_s=10, db="sqlite",
                      log_dir=str(tmp_path)))
    check(rep, 50)
    assert rep.made >= 50 * 10


@pytest.mark.postgres
def test_smoke_50_vehicles_postgres(pg_url, tmp_path):
    rep = run(Options(vehicles=50, rate_hz=1.0, duration_s=10, db=pg_url,
                      log_dir=str(tmp_path)))
    check(rep, 50)


def test_outage_storm_drains_backlog_exactly_once(tmp_path):
    rep = run(Options(vehicles=20, rate_hz=10.0, duration_s=9, mode="storm", outage_at_s=2,
                      outage_s=4, db="sqlite", log_dir=str(tmp_path)))
    check(rep, 20)
    assert rep.storm["backlog"] >= 20 * 10 * 4       # ~4 s of readings waited per vehicle
    assert rep.storm["drained"] == 20
    assert rep.connects == 40                        # everyone connected twice


def test_churn_reconnects_and_migrates_exactly_once(tmp_path):
    rep = run(Options(vehicles=30, rate_hz=2.0, duration_s=10, mode="churn", churn_per_s=0.3,
                      db="sqlite", log_dir=str(tmp_path)))
    check(rep, 30)
    assert rep.reconnects > 0 and rep.migrations > 0
