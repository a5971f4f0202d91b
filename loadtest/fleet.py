"""A simulated vehicle's readings and acknowledgements (sans-IO: time is an argument).

`SimVehicle` makes readings at a fixed rate as the agent's sources do (`agent.readings`
positions with every field the agent sends, and every `CAN_EVERY`-th reading a CAN snapshot of
`CAN_SIGNALS` signals, so sizes match a truck's), encodes them as the agent's journal does
(`agent.wire_encode`'s bytes, written through a `Skeleton` of each shape: one `struct` call a
reading) into its `MemoryJournal`, hands out batches in the agent's drain order, and books
acknowledgements: which sequence numbers are done and how long each waited.
Which batch goes when is not decided here: the agent's `UplinkMachine` does (loadtest/driver.py).
"""

from __future__ import annotations

import math
import random

import cbor2

from agent.journal_drain import DrainState
from agent.readings import Position, Reading, Signals
from agent.wire_encode import U32_MAX, encode
from geostream.codec import EncodedReadings

from .journal import MemoryJournal
from .wire_skeleton import Skeleton, float_hole, uint_hole

# One reading in this many is a CAN snapshot; the rest are positions (a 1–10 Hz GPS and a
# few CAN snapshots per second, as the agent's defaults produce).
CAN_EVERY = 4
CAN_SIGNALS = ("EngineSpeed", "VehicleSpeed", "AccelPedalPos", "EngineCoolantTemp",
               "FuelLevel", "EngineLoad", "BatteryVoltage", "Odometer")
# The fixed parts of a simulated reading (what a parked-in-the-sky GPS and a truck's bus report
# the same every time).
ALT_M, FIX, MODE, SATS, HDOP = 12.5, 1, 3, 9, 0.9
CAN_BUS = "can0"
ODOMETER_KM = 123456
# Latency histogram resolution and range (1 ms buckets; slower acks land in the last one).
HIST_MAX_MS = 60_000


class Histogram:
    """Counts in 1 ms buckets, mergeable across processes (percentiles of the whole run)."""

    def __init__(self, counts: dict[int, int] | None = None):
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, seconds: float) -> None:
        ms = min(HIST_MAX_MS, int(seconds * 1000))
        self.counts[ms] = self.counts.get(ms, 0) + 1

    def merge(self, other: Histogram) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        """The p-th percentile in ms (upper edge of its bucket), None if empty."""
        total = self.total
        if not total:
            return None
        rank = max(1, math.ceil(total * p / 100))
        seen = 0
        for ms in sorted(self.counts):
            seen += self.counts[ms]
            if seen >= rank:
                return float(ms + 1)
        return float(HIST_MAX_MS)

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Histogram:
        return cls({int(k): v for k, v in data.items()})


def reading_of(is_position: bool, values: tuple) -> Reading:
    """The agent's reading for `SimVehicle._draw`'s values (the reference the skeletons
    reproduce)."""
    if is_position:
        ts, lat, lon, speed, course = values
        return Position(ts, lat, lon, alt_m=ALT_M, speed_kmh=speed, course_deg=course, fix=FIX,
                        mode=MODE, sats=SATS, hdop=HDOP)
    return Signals(values[0], CAN_BUS, dict(zip(CAN_SIGNALS, values[1:], strict=True)))


def _skeleton(is_position: bool, sentinels: tuple) -> Skeleton:
    """A shape's skeleton from the agent's encoder: the ts an 8-byte uint (wall-clock ms
    since 1970 are beyond 32 bits), floats float64, ints as wide as their sentinel."""
    holes = [uint_hole(v) if type(v) is int else float_hole(v) for v in sentinels]
    return Skeleton(encode(reading_of(is_position, sentinels)), holes, sentinels)


# sentinels: values of each hole's width whose bytes appear nowhere else in the reading; the
# ranges `_draw` keeps to: CAN ints 24..255 (one argument byte), the odometer 65536..2^32-1
_POSITION = _skeleton(True, (0x1122334455667788, 11.1111111, 22.2222222, 33.3, 44.4))
_SIGNALS = _skeleton(False, (0x1122334455667788, 1111.1, 22.22, 33.3, 77, 44.4, 88, 25.55,
                             3_000_000))


class SimVehicle:
    """One vehicle's readings from `start` (seconds, the caller's clock) at `rate_hz`."""

    def __init__(self, vehicle_id: str, token: str, epoch: int, rate_hz: float, start: float,
                 wall_ms_at_start: int, seed: int = 0, latency: Histogram | None = None,
                 live_latency: Histogram | None = None):
        """`latency`, `live_latency`: histograms to book into (a process's vehicles share
        theirs: one merge at the end instead of one per vehicle); else the vehicle's own."""
        self.vehicle_id = vehicle_id
        self.token = token
        self.epoch = epoch
        self.rate_hz = rate_hz
        self.start = start
        self.wall_ms_at_start = wall_ms_at_start
        self._rng = random.Random(seed)
        self._random = self._rng.random
        self._lat = 53.55 + self._rng.uniform(-0.2, 0.2)
        self._lon = 9.99 + self._rng.uniform(-0.3, 0.3)
        self.made = 0                 # readings made so far; sequence numbers 1..made
        self.journal = MemoryJournal()
        self.sent_at: dict[int, float] = {}
        self._live_q: set[int] = set()  # sent in a batch that caught up (a live batch)
        self.acked = 0
        self.latency = latency if latency is not None else Histogram()
        # readings that went out in a live batch
        self.live_latency = live_latency if live_latency is not None else Histogram()
        self.making = True
        self.last_ack_at: float | None = None  # the loop's time of the latest ack with news

    # --- readings ---------------------------------------------------------------------

    def make_due(self, now: float) -> int:
        """Make every reading due by `now` into the journal; returns how many were made."""
        if not self.making or now < self.start + self.made / self.rate_hz:
            return 0  # the next one is not due yet (the common case: one check per input)
        due = int((now - self.start) * self.rate_hz) + 1
        n = due - self.made
        append = self.journal.append
        while self.made < due:
            self.made += 1
            is_position, values = self._draw(self.made)
            if values[0] > U32_MAX:  # the skeletons' timestamp is an 8-byte uint
                payload = (_POSITION if is_position else _SIGNALS).pack(*values)
            else:
                payload = encode(reading_of(is_position, values))
            append(payload, is_position)
        return max(0, n)

    def made_at(self, q: int) -> float:
        """When reading number `q` was due (the caller's clock)."""
        return self.start + (q - 1) / self.rate_hz

    def next_due(self) -> float | None:
        """When the next reading is due (None while nothing is made)."""
        return self.start + self.made / self.rate_hz if self.making else None

    def reading(self, q: int) -> Reading:
        """Reading number `q` as the agent's sources make it (call in order of q)."""
        return reading_of(*self._draw(q))

    def _draw(self, q: int) -> tuple[bool, tuple]:
        """(is a position, its values in wire order) for reading number `q`: the random
        walk and sensor values (call in order of q)."""
        ts = self.wall_ms_at_start + int((q - 1) * 1000 / self.rate_hz)
        r = self._random
        if q % CAN_EVERY == 0:
            return False, (ts, 600 + r() * 1600, r() * 90, r() * 100, 70 + int(r() * 26),
                           5 + r() * 95, 24 + int(r() * 77), 24 + r() * 4, ODOMETER_KM + q // 10)
        self._lat += (r() - 0.5) * 2e-4
        self._lon += (r() - 0.5) * 2e-4
        return True, (ts, self._lat, self._lon, r() * 90, r() * 360)

    def wire_reading(self, q: int) -> dict:
        """Reading number `q` as a batch carries it, with its "q" (benchmarks' readings)."""
        wire = self.reading(q).to_wire()
        wire["q"] = q
        return wire

    def pending_wire(self) -> list[dict]:
        """Every unacknowledged reading as a batch would carry it, oldest first."""
        out = []
        for q, (_, payload) in sorted(self.journal.rows.items()):
            wire = cbor2.loads(payload)
            wire["q"] = q
            out.append(wire)
        return out

    @property
    def unacked(self) -> list[int]:
        """Sequence numbers made and not acknowledged, ascending."""
        return sorted(self.journal.rows)

    # --- batches and acks ---------------------------------------------------------------

    def next_batch(self, drain: DrainState, max_readings: int, max_bytes: int,
                   now: float) -> EncodedReadings:
        """The journal's next batch in the agent's drain order; remembers when each went."""
        batch = self.journal.next_batch(drain, max_readings, max_bytes)
        live, sent_at, live_q = not drain.more, self.sent_at, self._live_q
        for q in batch.seqs:
            sent_at[q] = now
            if live:
                live_q.add(q)
            else:
                live_q.discard(q)
        return batch

    def acknowledge(self, through: int, ranges, now: float) -> int:
        """Apply an ack to the journal and book its latencies; returns how many were new."""
        gone = self.journal.acknowledge(through, ranges)
        sent_at, live_q = self.sent_at, self._live_q
        counts, live_counts = self.latency.counts, self.live_latency.counts
        for q in gone:
            sent = sent_at.pop(q, None)
            if sent is not None:  # `Histogram.add`, written out: once per acked reading
                ms = min(HIST_MAX_MS, int((now - sent) * 1000))
                counts[ms] = counts.get(ms, 0) + 1
                if q in live_q:
                    live_counts[ms] = live_counts.get(ms, 0) + 1
                    live_q.discard(q)
        self.acked += len(gone)
        if gone:
            self.last_ack_at = now
        return len(gone)
