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
    # the report splits the machine's CPU: gateway, clients, the rest, idle
    assert rep.machine_cores >= 1 and 0 <= rep.machine_idle_pct <= 100
    assert rep.gateway_cpu_pct > 0 and rep.client_cpu_pct > 0 and rep.other_cpu_pct >= 0
    assert rep.client_us_per_vehicle_s > 0 and rep.bottleneck()


def test_vehicles_pace_live_batches_as_the_agent_does(tmp_path):
    """5 readings a second, one live batch a second (the agent's send interval): the
    vehicles' uplink machines pace them, as an agent's does."""
    rep = run(Options(vehicles=10, rate_hz=5.0, duration_s=8, db="sqlite",
                      log_dir=str(tmp_path)))
    check(rep, 10)
    assert rep.made >= 10 * 5 * 8
    assert rep.batches <= 10 * (8 + 3)       # ~1 per second each, not 1 per reading


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
    # and came back as agents do: resumed with the session ticket of its first connection,
    # its hello in 0-RTT (not a second full handshake)
    assert rep.resumed >= 20 and rep.early_data >= 20


def test_churn_reconnects_and_migrates_exactly_once(tmp_path):
    rep = run(Options(vehicles=30, rate_hz=2.0, duration_s=10, mode="churn", churn_per_s=0.3,
                      db="sqlite", log_dir=str(tmp_path)))
    check(rep, 30)
    assert rep.reconnects > 0 and rep.migrations > 0
