"""The load generator's readings, written through skeletons, are byte for byte what the agent's
encoder writes for the same readings (the reference: `agent.wire_encode.encode` of the
`Position`/`Signals` the agent's sources make)."""

import random

import cbor2
import pytest

from agent.wire_encode import encode
from loadtest.fleet import _POSITION, _SIGNALS, CAN_EVERY, SimVehicle, reading_of
from loadtest.wire_skeleton import Skeleton, float_hole, uint_hole


@pytest.mark.parametrize("seed", range(6))
def test_made_readings_are_the_agents_encoding_of_the_same_readings(seed):
    rng = random.Random(seed)
    rate = rng.choice([0.2, 1.0, 4.0, 10.0])
    wall = rng.randrange(2**32, 2**41)
    made = SimVehicle("v", "t", 1, rate, start=0.0, wall_ms_at_start=wall, seed=seed)
    twin = SimVehicle("v", "t", 1, rate, start=0.0, wall_ms_at_start=wall, seed=seed)
    made.make_due(400 / rate)
    assert made.made == 401
    for q, (is_position, payload) in made.journal.rows.items():
        reading = twin.reading(q)  # the same draws, through the agent's dataclasses
        assert payload == encode(reading), q
        assert is_position == (q % CAN_EVERY != 0)
        assert cbor2.loads(payload) == reading.to_wire()


def test_random_values_of_every_hole_encode_as_the_agent_encodes_them():
    rng = random.Random(7)
    for _ in range(2000):
        ts = rng.randrange(2**32, 2**64)
        f = [rng.choice([rng.uniform(-1e6, 1e6), rng.random(), -0.0, 1e300, float(rng.randint(
            -5, 5))]) for _ in range(6)]
        position = (ts, *f[:4])
        can = (ts, f[0], f[1], f[2], rng.randint(24, 255), f[3], rng.randint(24, 255), f[4],
               rng.randrange(65536, 2**32))
        assert _POSITION.pack(*position) == encode(reading_of(True, position))
        assert _SIGNALS.pack(*can) == encode(reading_of(False, can))


def test_a_small_timestamp_goes_through_the_encoder_not_the_skeleton():
    v = SimVehicle("v", "t", 1, 1.0, start=0.0, wall_ms_at_start=1000, seed=1)
    twin = SimVehicle("v", "t", 1, 1.0, start=0.0, wall_ms_at_start=1000, seed=1)
    v.make_due(5.0)
    assert [p for _, p in v.journal.rows.values()] == [encode(twin.reading(q))
                                                        for q in range(1, 7)]


def test_a_skeleton_that_cannot_reproduce_its_reference_is_refused():
    ref = cbor2.dumps({"a": 1.5, "b": 300})
    with pytest.raises(ValueError):  # a hole the reference does not hold
        Skeleton(ref, [float_hole(2.5)], (2.5,))
    with pytest.raises(ValueError):  # the values do not give the reference
        Skeleton(ref, [float_hole(1.5), uint_hole(300)], (1.5, 301))
    with pytest.raises(ValueError):
        uint_hole(7)  # written in the head byte: no argument to fill
    s = Skeleton(cbor2.dumps({"n": 300, "x": 2.5}), [uint_hole(300), float_hole(2.5)],
                 (300, 2.5))
    assert s.pack(65000, -1.25) == cbor2.dumps({"n": 65000, "x": -1.25})
