"""The sans-IO path of one CAN bus: frame → decode (DBC, J1939, DM1) or OBD-II answer →
select → `Signals` and DTC events. No bus, no clock: time is an argument."""

from __future__ import annotations

import can

from ..readings import Signals
from ..sources import Emit
from .decoder import CanDecoder
from .dtc import Dm1, DtcTracker
from .obd import RESPONSE_IDS, ObdPoller
from .select import Selector


class CanPipeline:
    """Frame → decode → select → `Signals`, for one bus. Pure: time is an argument."""

    def __init__(self, bus: str, decoder: CanDecoder, selector: Selector,
                 poller: ObdPoller | None = None):
        self.bus = bus
        self.decoder = decoder
        self.selector = selector
        self.poller = poller
        self.outbox: list[can.Message] = []  # frames to send (OBD-II requests, flow control)
        self.counts = {"readings": 0, "selected": 0, "snapshots": 0}
        self.snapshots = selector.snapshot_period_ms > 0
        self.dtcs = DtcTracker(bus)
        # obd.query (docs/protocol.md §3): (mode, pid) → answers [(src, data)] while asked
        self.queries: dict[tuple[int, int], list[tuple[int, bytes]]] = {}

    def poll(self, ts_ms: int) -> None:
        """Let the OBD-II poller queue its due requests in `outbox`."""
        if self.poller is not None:
            self.outbox += self.poller.on_timer(ts_ms)

    def _obd(self, msg: can.Message, ts_ms: int, emit: Emit) -> None:
        send, results = self.poller.on_frame(msg, ts_ms)
        self.outbox += send
        for result in results:
            if result[0] == "signals":
                _, src, values = result
                if src != RESPONSE_IDS[0]:
                    values = {f"{k}@{src:X}": v for k, v in values.items()}
                self.counts["readings"] += 1
                self.counts["selected"] += len(values)
                emit(Signals(ts_ms, self.bus, values))
            else:
                _, src, which, dtcs = result
                event = self.dtcs.update(ts_ms, "obd2", src, which, dtcs)
                if event is not None:
                    emit(event)

    def _answer_query(self, msg: can.Message) -> None:
        """A single-frame OBD-II answer to a pending obd.query: keep its data bytes."""
        data = bytes(msg.data)
        n = data[0] & 0x0F if data else 0
        if len(data) < 3 or data[0] >> 4 != 0 or not 2 <= n <= 7:
            return
        answers = self.queries.get((data[1] - 0x40, data[2]))
        if answers is not None:
            answers.append((msg.arbitration_id, data[3:1 + n]))

    def feed(self, msg: can.Message, ts_ms: int, emit: Emit) -> None:
        if self.queries and not msg.is_extended_id and msg.arbitration_id in RESPONSE_IDS:
            self._answer_query(msg)
        if (self.poller is not None and not msg.is_extended_id
                and msg.arbitration_id in RESPONSE_IDS):
            self._obd(msg, ts_ms, emit)
            return
        decoded = self.decoder.feed(msg, ts_ms)
        if type(decoded) is Dm1:
            event = self.dtcs.update(ts_ms, "j1939", decoded.src, "active", decoded.dtcs,
                                     decoded.lamps)
            if event is not None:
                emit(event)
        elif decoded is not None and decoded.values:
            values = self.selector.offer(ts_ms, decoded.values)
            if values:
                self.counts["readings"] += 1
                self.counts["selected"] += len(values)
                emit(Signals(ts_ms, self.bus, values))
            if decoded.entry is not None:  # skip decoding what the selection would drop
                self.decoder.hold(decoded, ts_ms,
                                  self.selector.quiet_until(ts_ms, decoded.values))
        if self.snapshots and ts_ms >= self.selector.next_snapshot_ms:
            self.tick(ts_ms, emit)

    def tick(self, ts_ms: int, emit: Emit) -> None:
        """Emit a snapshot if one is due at `ts_ms`."""
        if not self.snapshots:
            return
        values = self.selector.snapshot(ts_ms)
        if values:
            self.counts["snapshots"] += 1
            emit(Signals(ts_ms, self.bus, values))

    def status(self) -> dict:
        obd = self.poller.counts if self.poller is not None else {}
        return {**self.decoder.counts, **self.counts, **self.dtcs.counts, **obd}
