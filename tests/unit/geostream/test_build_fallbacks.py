"""The constructors a compiled build takes instead of `__class__` assignment (a mypyc build:
its classes have their own layouts; there is no build step, see docs/benchmarks.md) build
the objects the plain build's do."""

import dataclasses

import pytest

from geostream import codec, session
from geostream.messages import Batch
from geostream.session import BatchReceived


def test_batch_by_init_is_the_batch_by_class():
    readings = ({"q": 1, "ts": 5, "k": "pos", "lat": 1.5, "lon": 2.5},)
    assert codec._batch in (codec._batch_by_class, codec._batch_by_init)
    # the trick is tried only where the build allows it (the plain build: both are compared)
    for make in {codec._batch_by_init, codec._batch}:
        b = make(3, readings, 40)
        assert type(b) is Batch and b == Batch(3, readings, None, 40)
        assert b.wire_size == 40 and b.vehicle is None
        with pytest.raises(dataclasses.FrozenInstanceError):
            b.epoch = 4  # type: ignore[misc]


def test_batch_received_by_init_is_the_event_by_class():
    batch = Batch(3, ({"q": 1},))
    assert session._batch_received in (session._batch_received_by_class,
                                       session._batch_received_by_init)
    for make in {session._batch_received_by_init, session._batch_received}:
        ev = make(batch)
        assert type(ev) is BatchReceived and ev == BatchReceived(batch) and ev.batch is batch
