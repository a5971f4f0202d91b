"""What the load tester logs of a vehicle left not drained (`Driver.describe`): its journal,
the machine's state and deadlines, the liveness silences, read from the live objects."""

import random
from types import SimpleNamespace

from geostream.timer_wheel import TimerWheel
from loadtest.driver import Driver
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
