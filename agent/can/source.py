"""CAN sources: a live python-can bus or a replayed log, around the sans-IO `CanPipeline`
(agent/can/pipeline.py).

An SLCAN adapter (the USB path) is read on the event loop, a tick at a time (agent/ticks.py).
Other interfaces' `recv()` may block, so each of those buses has one reader thread that only
receives and stamps frames and hands them over in batches (agent/can/handoff.py). Decoding,
selection and `emit` run on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import can

from geostream.clock import wall_ms

from ..sources import Emit, Finished, ReopeningSource, SourceState
from ..ticks import next_tick, readable, sleep_to_tick, spread_ms
from .decoder import CAN_ERR_BUSOFF
from .handoff import BATCH_FRAMES, Batcher, Handoff
from .logs import LogFile
from .pipeline import CanPipeline

__all__ = ["CanBusSource", "CanPipeline", "ReplaySource"]

log = logging.getLogger(__name__)

REOPEN_MIN_S = 0.5
# a CAN adapter that is missing stays missing for long (unplugged, ignition off): retry seldom
REOPEN_MAX_S = 30.0
RECV_TIMEOUT_S = 0.1  # the reader checks for a stop this often on a quiet bus
DRAIN_BATCH = 2_000  # frames decoded per turn before the loop lets other tasks run (~10 ms)
REPLAY_YIELD_EVERY = 256  # as-fast-as-possible replay yields to the loop this often


class CanBusSource(ReopeningSource):
    """A live bus: python-can `interface`/`channel` (+ kwargs), reopened with backoff."""

    # python-can raises many types for a missing or failing device
    open_errors = (Exception,)
    session_errors = (can.CanError, OSError, ValueError)

    def __init__(
        self,
        name: str,
        pipeline: CanPipeline,
        interface: str,
        channel: str | None,
        bus_kwargs: dict | None = None,
        kernel_filters: bool | None = None,
    ):
        super().__init__(name, log, reopen_min_s=REOPEN_MIN_S, reopen_max_s=REOPEN_MAX_S)
        self.name = name
        self.pipeline = pipeline
        self.interface = interface
        self.channel = channel
        self.bus_kwargs = dict(bus_kwargs or {})
        # socketcan filters in the kernel; elsewhere python-can would filter in Python, which
        # costs more per frame than the decoder's own id lookup
        self.kernel_filters = interface == "socketcan" if kernel_filters is None else kernel_filters
        self.counts.update(dropped=0, sent=0)
        self._dropped_before = 0  # by the hand-offs of earlier opens

    def status(self) -> dict:
        return {
            "state": self.state, "interface": self.interface, "channel": self.channel,
            **self.counts, **self.pipeline.status(),
        }

    def _open_bus(self) -> can.BusABC:
        kwargs = dict(self.bus_kwargs)
        if self.kernel_filters:
            filters = self.pipeline.decoder.can_filters()
            if filters is not None and self.pipeline.poller is not None:
                filters.append({"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False})
            kwargs["can_filters"] = filters
        if self.interface == "slcan":  # python-can's, reading blocks instead of bytes
            from .slcan import SlcanBus

            return SlcanBus(self.channel, **kwargs)
        return can.Bus(interface=self.interface, channel=self.channel, **kwargs)

    async def _open(self) -> can.BusABC:
        return await asyncio.to_thread(self._open_bus)

    async def _close(self, bus: can.BusABC) -> None:
        await asyncio.to_thread(_shutdown, bus)

    async def _session(self, bus: can.BusABC, emit: Emit) -> str:
        await self._pump(bus, emit)
        return "reader stopped"

    async def _pump(self, bus: can.BusABC, emit: Emit) -> None:
        if hasattr(bus, "line_waiting"):  # SlcanBus: the loop reads it, no thread
            await self._pump_on_loop(bus, emit)
        else:
            await self._pump_from_thread(bus, emit)

    def _timeout(self) -> float | None:
        """Seconds until the pipeline's next own deadline (snapshots, OBD-II polls), or None."""
        pipeline, timeout = self.pipeline, None
        if pipeline.snapshots:
            timeout = max(0.0, (pipeline.selector.next_snapshot_ms - wall_ms()) / 1000)
            timeout = min(timeout, 1.0)
        if pipeline.poller is not None:
            wait = max(0.0, (pipeline.poller.next_deadline() - wall_ms()) / 1000)
            timeout = min(wait, 1.0) if timeout is None else min(timeout, wait)
        return timeout

    def _feed(self, batch: list, emit: Emit) -> None:
        """Decode a batch of `(ts_ms, msg)` in order; bus-off and recovery from its frames."""
        self.heard()
        feed = self.pipeline.feed
        traffic = False  # a frame after the batch's last bus-off error frame
        for ts, msg in batch:
            feed(msg, ts, emit)
            if not msg.is_error_frame:
                traffic = True
            elif msg.arbitration_id & CAN_ERR_BUSOFF:
                self.set_state(SourceState.BUS_OFF)
                traffic = False
        if traffic and self.state != SourceState.UP:
            self.set_state(SourceState.UP)  # traffic again after bus-off

    def _turn(self, bus: can.BusABC, emit: Emit) -> None:
        """After each read: the pipeline's timed work, and what it has to send."""
        pipeline = self.pipeline
        pipeline.tick(wall_ms(), emit)
        pipeline.poll(wall_ms())
        while pipeline.outbox:
            self.counts["sent"] += 1
            bus.send(pipeline.outbox.pop(0))

    async def _pump_on_loop(self, bus, emit: Emit) -> None:
        """Read an SLCAN adapter on the event loop, on the wake-up grid (agent/ticks.py).

        While frames flow, one read per `TICK_S` (100 ms) takes everything the port holds:
        one wake-up for ~200 frames at 2,000 frames/s, shared with the GPS read and the
        journal's commit, instead of a reader thread's wake-ups and a hand-off per batch. A
        read that finds nothing waits for the port to become readable, so a frame arriving
        alone is read (and stamped) at once. Frames read on a tick are stamped spread over the
        time since the previous read (agent/ticks.py, `spread_ms`): never earlier than that
        read, never later than this one, in order. The tty holds the frames between reads
        (a 64 KB flip buffer behind the line discipline's 4 KB: ~1 s at 2,000 frames/s)."""
        fd = bus.fileno()
        recv, waiting = bus.recv, bus.line_waiting
        loop = asyncio.get_running_loop()
        since_ms, on_tick = wall_ms(), False
        while True:
            frames: list[can.Message] = []
            failure: BaseException | None = None
            try:
                while len(frames) < DRAIN_BATCH:
                    msg = recv(0)
                    if msg is not None:
                        frames.append(msg)
                    elif not waiting():  # else a line that was no frame: take the next
                        break
            except Exception as exc:  # what was read before it still counts
                failure = exc
            now_ms = wall_ms()
            if frames:
                stamps = spread_ms(since_ms, now_ms, len(frames)) if on_tick else \
                    [now_ms] * len(frames)
                self._feed(list(zip(stamps, frames, strict=True)), emit)
            since_ms = now_ms
            if failure is not None:
                if isinstance(failure, (can.CanError, OSError, ValueError)):
                    raise failure
                raise can.CanOperationError(f"reader failed: {failure!r}") from failure
            self._turn(bus, emit)
            timeout = self._timeout()
            if len(frames) >= DRAIN_BATCH:  # more waits: let other tasks run first
                on_tick = False
                await asyncio.sleep(0)
            elif frames:
                on_tick = True
                if timeout is not None and loop.time() + timeout < next_tick(loop.time()):
                    await asyncio.sleep(timeout)
                else:
                    await sleep_to_tick()
            else:
                on_tick = False
                await readable(fd, timeout)

    async def _pump_from_thread(self, bus: can.BusABC, emit: Emit) -> None:
        """Other interfaces (socketcan, vendor drivers, python-can's virtual bus): their
        `recv()` may block, so a reader thread receives and hands over in batches
        (agent/can/handoff.py)."""
        handoff = Handoff(asyncio.get_running_loop())
        stop = threading.Event()
        thread = threading.Thread(target=_reader, args=(bus, handoff, stop),
                                  name=f"{self.name}-reader", daemon=True)
        thread.start()
        try:
            while True:
                await handoff.wait(self._timeout())
                for batch in handoff.take(DRAIN_BATCH):
                    self._feed(batch, emit)
                self.counts["dropped"] = self._dropped_before + handoff.dropped
                self._turn(bus, emit)
                if handoff.waiting:  # more than one turn's worth: let other tasks run first
                    await asyncio.sleep(0)
                elif handoff.failure is not None:
                    exc = handoff.failure
                    if isinstance(exc, (can.CanError, OSError, ValueError)):
                        raise exc
                    raise can.CanOperationError(f"reader failed: {exc!r}")
        finally:
            stop.set()
            self._dropped_before += handoff.dropped
            self.counts["dropped"] = self._dropped_before
            await asyncio.to_thread(thread.join, 2.0)


def _reader(bus: can.BusABC, handoff: Handoff, stop: threading.Event) -> None:
    """The reader thread: receive, stamp, and hand over in batches (agent/can/handoff.py).

    Idle, it blocks for the first frame, stamped as it comes. With a batch open it sleeps
    (`Batcher.pause`) and then drains what the driver gathered meanwhile, stamped spread over
    the time since the previous drain (agent/ticks.py `spread_ms`), so sleeping longer between
    drains costs no time accuracy for periodic traffic."""
    batcher = Batcher()
    recv = bus.recv
    clock = time.monotonic
    drained: list[can.Message] = []
    since_ms = 0  # when the previous drain ended
    try:
        while not stop.is_set():
            if not batcher.frames:
                msg = recv(RECV_TIMEOUT_S)
                if msg is None:
                    continue
                since_ms = wall_ms()
                batcher.add((since_ms, msg), clock())
            while len(drained) < BATCH_FRAMES and (msg := recv(0)) is not None:
                drained.append(msg)
            now_ms, now = wall_ms(), clock()
            for ts, msg in zip(spread_ms(since_ms, now_ms, len(drained)), drained, strict=True):
                batcher.add((ts, msg), now)
            full = len(drained) >= BATCH_FRAMES
            drained.clear()
            since_ms = now_ms
            if batcher.due(now):
                handoff.put(batcher.take())
            elif not full:
                time.sleep(batcher.pause(now))  # let frames gather in the driver
    except BaseException as exc:  # hand every failure to the loop, which reopens
        now_ms = wall_ms()
        for msg in drained:
            batcher.add((now_ms, msg), clock())
        handoff.put(batcher.take())
        handoff.fail(exc)


def _shutdown(bus: can.BusABC) -> None:
    try:
        bus.shutdown()
    except Exception as exc:  # a vanished device may fail to close; nothing left to do
        log.debug("shutdown: %s", exc)


class ReplaySource(ReopeningSource):
    """A log file as a bus. `speed` 1.0 = recorded pace, 2.0 twice as fast, 0 = as fast as
    possible. `timestamps`: "log" keeps recorded times, "now" shifts them to start now.
    `channel` keeps only frames recorded on that interface. `loop` replays forever; a log
    that cannot be read, or holds no frame, is retried with backoff."""

    def __init__(
        self,
        name: str,
        pipeline: CanPipeline,
        path: Path | str,
        speed: float = 1.0,
        loop: bool = False,
        timestamps: str = "log",
        channel: str | None = None,
        clock=time.monotonic,
        sleep=asyncio.sleep,
    ):
        super().__init__(name, log, reopen_min_s=REOPEN_MIN_S, reopen_max_s=REOPEN_MAX_S,
                         sleep=sleep)
        self.name = name
        self.pipeline = pipeline
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.timestamps = timestamps
        self.channel = channel
        self.counts.update(passes=0, bad_lines=0)
        self._clock = clock
        self._sleep = sleep
        self._last_ts_ms = 0
        self._fed = 0  # frames played in the last pass

    def status(self) -> dict:
        return {"state": self.state, "file": str(self.path), **self.counts,
                **self.pipeline.status()}

    async def _open(self) -> Path:
        self.path.open("rb").close()  # missing or unreadable: OSError, retried with backoff
        return self.path

    async def _close(self, path: Path) -> None:
        pass  # each pass opens and closes the file itself

    async def _session(self, path: Path, emit: Emit) -> str:
        """Replay passes (one unless `loop`); an empty log (or one with no frame of
        `channel`) ends the session, so it is retried with backoff instead of spinning."""
        while True:
            await self._play_once(emit)
            self.counts["passes"] += 1
            if not self._fed:
                return "no frames in the log"
            self.heard()
            if not self.loop:
                raise Finished

    async def _play_once(self, emit: Emit) -> None:
        logfile = LogFile(self.path)
        feed = self.pipeline.feed
        first_log_s = None
        start = self._clock()
        shift_ms = 0
        n = 0
        try:
            for msg in logfile:
                if self.channel is not None and msg.channel != self.channel:
                    continue
                t = msg.timestamp
                if first_log_s is None:
                    first_log_s = t
                    if self.timestamps == "now":  # later passes continue after the last
                        shift_ms = max(wall_ms(), self._last_ts_ms + 1) - round(t * 1000)
                n += 1
                waited = False
                if self.speed > 0:
                    wait = start + (t - first_log_s) / self.speed - self._clock()
                    if wait > 0:
                        await self._sleep(wait)
                        waited = True
                if not waited and n % REPLAY_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # bursts and flat-out replay share the loop
                ts_ms = round(t * 1000) + shift_ms
                self._last_ts_ms = ts_ms
                feed(msg, ts_ms, emit)
        finally:
            self._fed = n
            self.counts["bad_lines"] += logfile.bad_lines
