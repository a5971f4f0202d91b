"""The load test report's CPU split: the machine's busy CPU less the run's own process trees."""

from loadtest.report import Report, split_cpu


def test_other_cpu_is_what_the_run_did_not_use():
    # 2 cores, 150 % busy: gateway 60, clients 40, store server 20 → others 30
    assert split_cpu(150.0, 60.0, 40.0, 20.0) == 30.0
    assert split_cpu(150.0, 60.0, 40.0) == 50.0
    # read a few ms apart, the trees may add up to a hair above the machine: never negative
    assert split_cpu(99.0, 60.0, 40.0) == 0.0


def test_the_report_prints_each_share_and_the_bottleneck():
    rep = Report(options={"rate_hz": 1.0, "mode": "steady", "duration_s": 20.0, "db": "sqlite",
                          "gateways": 1, "workers": 2},
                 vehicles=1000, gateway_cpu_pct=95.0, client_cpu_pct=30.0, store_cpu_pct=12.0,
                 other_cpu_pct=40.0, machine_cores=2, machine_idle_pct=11.0,
                 quic_gateway="aioquic", quic_clients="qh3")
    text = "\n".join(rep.lines())
    assert "QUIC gateway aioquic / clients qh3" in text
    assert "gateway            95 % CPU" in text and "clients            30 % CPU" in text
    assert "store server 12 % CPU, other processes 40 % CPU" in text
    assert "bottleneck: gateway" in text


def test_one_saturated_client_process_is_the_bottleneck_and_its_lag_is_shown():
    """Each client process is one event loop: one at a full core is the bottleneck even when
    the clients' sum over two processes is not."""
    opts = {"rate_hz": 1.0, "mode": "steady", "duration_s": 20.0, "db": "sqlite",
            "gateways": 1, "workers": 2}
    rep = Report(options=opts, vehicles=3000, gateway_cpu_pct=50.0, client_cpu_pct=130.0,
                 client_cpu_max_pct=97.0, client_lag_p50_ms=41.0, client_lag_p99_ms=380.0,
                 machine_cores=2, machine_idle_pct=14.0)
    text = "\n".join(rep.lines())
    assert "bottleneck: client" in text
    assert "busiest process 97 %, its timers late by p50 41 ms p99 380 ms" in text
    rep.client_cpu_max_pct = 65.0
    assert rep.bottleneck() == "none (CPU to spare)"
