"""What the load tester logs of a vehicle left not drained (`Driver.describe`): its journal,
the machine's state and deadlines, the liveness silences, read from the live objects."""

import random
from types import SimpleNamespace

from agent.uplink_machine import State
from geostream.timer_wheel import TimerWheel
from loadtest.driver import LATE_S, Driver
from loadtest.fleet import SimVehicle


def test_a_vehicle_that_never_connected_is_described_from_its_live_state():
    sim = SimVehicle("v0042", "tok", epoch=5, rate_hz=1.0, start=100.0,
                     wall_ms_at_start=1_790_000_000_000, seed=3)
    assert sim.make_due(104.0) == 5
    edge = SimpleNamespace(now=lambda: 104.0, timers=TimerWheel(0.01))
    worker = SimpleNamespace(edge=edge, send_interval_s=1.0, rng=random.Random(1))
    d = Driver(worker, sim, ("127.0.0.1", 4433))
    d.machine.liveness.heard = 90.0
    line = d.describe(110.0)
    assert line.startswith("v0042: pending 5; last ack never; state DISCONNECTED")
    assert "heard 20.0 s ago" in line
    assert "link" not in line  # no connection: nothing of QUIC to show


def test_a_stalled_vehicle_is_counted_by_what_it_waits_for_and_a_wake_that_never_came():
    """`stall_kind`, the report's count of the vehicles not drained: the machine's state, and
    for a connected one its liveness phase and whether readings wait for an ack; a deadline of
    its own more than LATE_S past (filed, never woken) or none at all."""
    sim = SimVehicle("v7", "tok", epoch=5, rate_hz=1.0, start=100.0,
                     wall_ms_at_start=1_790_000_000_000, seed=3)
    assert sim.made_at(1) == 100.0 and sim.made_at(20) == 119.0
    edge = SimpleNamespace(now=lambda: 104.0, timers=TimerWheel(0.01))
    d = Driver(SimpleNamespace(edge=edge, send_interval_s=1.0, rng=random.Random(1)), sim,
               ("127.0.0.1", 4433))
    assert d.stall_kind(110.0) == "DISCONNECTED, no deadline"
    d._filed_at = 109.0
    assert d.stall_kind(110.0) == "DISCONNECTED"  # due a second ago: a busy process
    d._filed_at = 110.0 - LATE_S - 0.1
    assert d.stall_kind(110.0) == "DISCONNECTED, deadline overdue"
    edge.timers.set(d, 104.9)
    assert "filed in -5.1 s; wheel in -5.1 s" in d.describe(110.0)
    d.machine.state = State.CONNECTED
    d.machine.session = SimpleNamespace(in_flight={3: None}, ready=True, credit=64)
    assert d.stall_kind(110.0) == ("CONNECTED, liveness OFF, readings in flight, "
                                   "deadline overdue")
