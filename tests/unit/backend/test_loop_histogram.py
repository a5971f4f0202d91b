"""The gateway's ack-latency histogram exposes what prometheus-client's own `Histogram` does
for the same observations (buckets, count, sum), edges of every bucket included."""

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.registry import Collector

from backend.metrics import ACK_BUCKETS_S, LoopHistogram


class _One(Collector):
    def __init__(self, histogram):
        self.histogram = histogram

    def collect(self):
        yield from self.histogram.collect()


def exposition(histogram) -> list[str]:
    registry = CollectorRegistry()
    registry.register(_One(histogram))
    return [line for line in generate_latest(registry).decode().splitlines()
            if not line.startswith("#") and "_created" not in line]


def test_the_same_text_as_prometheus_clients_histogram():
    rng = random.Random(3)
    values = [*ACK_BUCKETS_S, 0.0, 11.0, 1e-9, *(rng.uniform(0, 12) for _ in range(500))]
    values += [b * (1 + 1e-12) for b in ACK_BUCKETS_S]  # just above each edge
    ours = LoopHistogram("fleet_ack_latency_seconds", "Batch received to ack sent",
                         ACK_BUCKETS_S)
    theirs = Histogram("fleet_ack_latency_seconds", "Batch received to ack sent",
                       buckets=ACK_BUCKETS_S, registry=None)
    assert exposition(ours) == exposition(theirs)  # empty
    for v in values:
        ours.observe(v)
        theirs.observe(v)
    got, expected = exposition(ours), exposition(theirs)
    assert got == expected
    assert f"fleet_ack_latency_seconds_count {float(len(values))}" in got
