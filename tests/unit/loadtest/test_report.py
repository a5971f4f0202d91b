"""The load test report: the CPU split (the machine's busy CPU less the run's own process
trees, user and system apart), the drain after the load, the machine yardstick."""

from loadtest.report import (
    Report,
    drain_summary,
    drain_times,
    memory_walk,
    memory_walk_ns,
    split_cpu,
    yardstick_ms,
)


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


def test_drain_times_from_each_vehicles_latest_ack():
    """The load stopped at 100 s, the drain ended at 160 s: a vehicle drained before the stop
    counts 0, one whose last ack came at 112.5 s 12.5 s; one still pending had gone 58 s
    without an ack (its latest at 102 s), one never acked since the stop at least."""
    figures = drain_times([(0, 99.0), (0, 112.5), (0, None), (3, 102.0), (1, None)],
                          end=100.0, now=160.0)
    assert figures == {"drained_s": [0.0, 12.5, 0.0], "silent_s": [58.0, 60.0]}


def test_drain_summary_max_p99_and_the_longest_silence():
    drained = [0.1 * i for i in range(1, 201)]  # 0.1 … 20.0 s
    longest, p99, undrained, silent = drain_summary(drained, [])
    assert longest == 20.0 and p99 == 0.1 * 198 and undrained == 0 and silent is None
    assert drain_summary([], [61.0, 75.5]) == (None, None, 2, 75.5)


def test_the_report_prints_the_drain_the_cpu_split_and_the_yardstick():
    rep = Report(options={"rate_hz": 1.0, "mode": "steady", "duration_s": 20.0, "db": "sqlite",
                          "gateways": 1, "workers": 2},
                 vehicles=1000, gateway_cpu_pct=95.0, gateway_user_pct=80.0,
                 gateway_sys_pct=15.0, client_cpu_pct=60.0, client_user_pct=45.0,
                 client_sys_pct=15.0, drain_max_s=4.2, drain_p99_s=1.3, yardstick_ms=123.4)
    text = "\n".join(rep.lines())
    assert "gateway            95 % CPU (user 80, system 15)" in text
    assert "clients            60 % CPU (user 45, system 15)" in text
    assert "yardstick          123 ms for 1M additions" in text
    assert "drain              drained in max 4.2 s (p99 1.3 s) after the load stopped" in text
    rep.undrained_vehicles, rep.undrained_silent_max_s = 7, 66.0
    assert "7 vehicles not drained, the longest without an ack 66.0 s" in rep.drain_line()


def test_the_report_prints_the_clients_wakeups_per_vehicle_second_and_what_each_served():
    """1,000 vehicles × 20 s: 2,000 socket reads of 26,000 datagrams and 1,800 timer wakeups
    of 19,800 owners are 0.1 reads (13 datagrams each) and 0.09 timer wakeups (11 owners
    each) per vehicle-second; a run without the counts prints no line."""
    rep = Report(options={"rate_hz": 1.0, "mode": "steady", "duration_s": 20.0, "db": "sqlite",
                          "gateways": 1, "workers": 2}, vehicles=1000)
    assert not any("client wakeups" in line for line in rep.lines())
    rep.client_wakeups = {"reads": 2000, "datagrams_received": 26_000, "wakeups": 1800,
                          "owner_wakes": 19_800}
    assert ("  client wakeups     socket reads 0.100 per vehicle-second (13.0 datagrams each), "
            "timer wakeups 0.090 (11.0 owners each)") in rep.lines()


def test_the_yardstick_times_its_loop():
    assert 0 < yardstick_ms(additions=10_000, rounds=2) < 10_000


def test_vehicles_not_drained_are_counted_by_what_they_wait_for_and_fail_the_verdict():
    """Three vehicles stalled from the window's start (57 readings never acked, the oldest
    made 79.6 s before the drain gave up): the percentiles of the acked readings do not show
    them, so the latency line says what they leave out and the verdict is not OK, whether
    the store holds their readings or not."""
    rep = Report(options={"rate_hz": 1.0, "mode": "steady", "duration_s": 20.0, "db": "sqlite",
                          "gateways": 1, "workers": 2},
                 vehicles=4000, made=80000, acked=79943, ack_p99_ms=412.0,
                 drain_max_s=0.9, drain_p99_s=0.9, undrained_vehicles=3,
                 undrained_silent_max_s=79.9, unacked_oldest_s=79.6,
                 undrained_kinds={
                     "CONNECTED, liveness TICK, nothing in flight, deadline overdue": 2,
                     "CONNECTED, liveness PROBING, readings in flight": 1})
    text = "\n".join(rep.lines())
    assert ("p99 412 ms  (live batches p99 -); not in them: 57 readings never acked, the "
            "oldest made 79.6 s before the drain gave up") in text
    assert ("3 vehicles not drained (2 CONNECTED, liveness TICK, nothing in flight, deadline "
            "overdue; 1 CONNECTED, liveness PROBING, readings in flight), the longest without "
            "an ack 79.9 s") in text
    assert not rep.ok  # unacked 0: the store holds them, the vehicles still wait
    assert rep.verdict() == ("NOT DRAINED: 0 lost, 0 duplicated, 0 still in the vehicles, "
                             "3 vehicles not drained")
    rep.undrained_vehicles, rep.acked = 0, 80000
    assert rep.ok and "never acked" not in "\n".join(rep.lines())


def test_the_memory_walk_is_one_cycle_through_every_entry():
    # a shorter cycle would keep the walk in the caches and read the machine as fast
    entries = 1 << 14
    walk = memory_walk(entries)
    seen, i = set(), 0
    for _ in range(entries):
        seen.add(i)
        i = walk[i]
    assert i == 0 and len(seen) == entries
    # consecutive steps land far apart: no cache line or prefetch stream follows them
    gaps = [abs(walk[i] - i) for i in range(1, 1000)]
    assert sorted(gaps)[len(gaps) // 2] > entries // 16


def test_the_memory_yardstick_is_printed_with_the_additions():
    rep = Report(options={"rate_hz": 1.0, "mode": "steady", "duration_s": 20.0, "db": "sqlite",
                          "gateways": 1, "workers": 2},
                 vehicles=1000, yardstick_ms=40.2, memory_ns=1333.4)
    text = "\n".join(rep.lines())
    assert "yardstick          40 ms for 1M additions in Python before the run; 1,333 ns a step " \
           "of a walk through 2M list entries" in text
    assert memory_walk_ns(entries=1 << 12, steps=2000, rounds=1) >= 0
