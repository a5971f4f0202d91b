"""The load tester's simulated vehicles through `python -m backend router` to three gateway
processes: churn (disconnects and migrations to new addresses) and every reading stored once."""

from loadtest.run import Options, run


def test_churn_through_the_router_to_three_nodes_exactly_once(tmp_path):
    rep = run(Options(vehicles=30, rate_hz=2.0, duration_s=8, mode="churn", churn_per_s=0.3,
                      gateways=3, router=True, db="sqlite", log_dir=str(tmp_path)))
    assert rep.connected == 30 and rep.made >= 30 * 8
    assert rep.stored == rep.made
    assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
    assert rep.reconnects > 0 and rep.migrations > 0
    logs = "".join(p.read_text() for p in tmp_path.glob("gateway*.log"))
    assert "Traceback" not in logs


def test_migrations_on_reuseport_workers_stay_on_their_process(tmp_path):
    """`--reuseport 2` (one port, two workers, the kernel steering by connection ID):
    migrations keep their connection (one landing on the other worker ends it: a reconnect,
    about every second migration without the steering; a few may come from the clients' stall
    rule on a loaded machine), and every reading is stored once."""
    rep = run(Options(vehicles=20, rate_hz=2.0, duration_s=8, mode="migrate", churn_per_s=0.3,
                      reuseport=2, db="postgres", log_dir=str(tmp_path)))
    assert rep.connected == 20 and rep.made >= 20 * 8
    assert rep.migrations >= 8 and rep.reconnects <= rep.migrations // 4
    assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
    assert rep.stored == rep.made
    assert "Traceback" not in (tmp_path / "gateway0.log").read_text()
