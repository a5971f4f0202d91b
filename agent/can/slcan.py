"""python-can's `slcan` bus, reading the serial port a block at a time instead of a byte at a time.

python-can 4.6's `slcanBus._read` calls pyserial's `read(1)` for every byte of every SLCAN line
(each a `select` + `read` system call and a pyserial `Timeout`) and polls with the port's 1 ms
timeout when the line is quiet; python-can has no option for anything else. At 2,000 frames/s
(~50,000 bytes/s) that was 55 % of the agent's CPU samples and the agent fell behind
(docs/benchmarks.md, "Agent at nominal load"). Measured, CPU per received frame over a pty
(`python bench/bench_can.py`, same run): python-can 205 µs paced at 2,000/s and 201 µs flat
out, this class 28 µs and 6 µs; the whole agent (`python bench/bench_agent.py --can slcan`)
went from 271 µs per frame with only 811 of 2,000 frames/s kept up to 25 µs with all of them.
Only `_read` is replaced: one `select` + `read` of whatever the port holds, lines cut out of
the buffer; opening, bit rates, line parsing, `send` and shutdown stay python-can's (and
pyserial's).
"""

from __future__ import annotations

import os
import select
import time

from can.exceptions import CanOperationError
from can.interfaces.slcan import slcanBus
from serial import SerialException

# An SLCAN line is at most ~140 bytes (a CAN FD frame); a longer run without a terminator is
# noise (wrong baud rate, a device that is not an SLCAN adapter): drop it instead of growing.
MAX_LINE = 256
READ_SIZE = 4096


class SlcanBus(slcanBus):
    """`interface = "slcan"` with block reads; same arguments as python-can's `slcanBus`.

    The agent reads it on its event loop (agent/can/source.py): `recv(0)` never blocks, and
    `line_waiting()` says whether a `recv(0)` that returned None (the line it took was no frame:
    an acknowledgement, an error bell) left whole lines to take without the port being
    readable again."""

    def line_waiting(self) -> bool:
        buf = self._buffer
        return bool(self._queue.qsize()) or b"\r" in buf or b"\a" in buf

    def _read(self, timeout: float | None) -> str | None:
        """The next line with its terminator (`\\r`, or `\\a` for an error), or None once
        `timeout` seconds pass without one."""
        buf = self._buffer
        deadline = None
        while True:
            end = buf.find(b"\r")
            bell = buf.find(b"\a")
            if bell >= 0 and (end < 0 or bell < end):
                end = bell
            if end >= 0:
                line = buf[:end + 1].decode("ascii", "replace")
                del buf[:end + 1]
                return line
            if len(buf) > MAX_LINE:
                buf.clear()
            if timeout is None:
                left = None
            else:
                if deadline is None:
                    deadline = time.monotonic() + timeout
                left = max(0.0, deadline - time.monotonic())
            try:
                fd = self.serialPortOrig.fileno()
                if not select.select((fd,), (), (), left)[0]:
                    if left == 0.0:
                        return None
                    continue
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except (OSError, ValueError, SerialException) as exc:  # ValueError: port closed
                raise CanOperationError(f"Could not read from serial device: {exc}") from exc
            if not chunk:  # readable but empty: the device went away
                raise CanOperationError("Could not read from serial device: it disconnected")
            buf += chunk
