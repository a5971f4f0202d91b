"""python-can's `slcan` bus, reading the serial port a block at a time instead of a byte at a time.

python-can 4.6's `slcanBus._read` calls pyserial's `read(1)` for every byte of every SLCAN line
(each a `select` + `read` system call and a pyserial `Timeout`), and polls with the port's 1 ms
timeout when the line is quiet. At 2,000 frames/s (~50,000 bytes/s) that was 55 % of the agent's
CPU samples and the agent fell behind (docs/benchmarks.md, "Agent at nominal load"). Measured
with `python bench/bench_agent.py --can slcan`: before, 271 µs of agent CPU per frame and only
811 of 2,000 frames/s kept up; after, see the benchmark section. This class overrides only
`_read` (one line out of a buffer filled by `read(in_waiting)`); opening, bit rates, line
parsing, `send` and shutdown stay python-can's.
"""

from __future__ import annotations

import os
import select
import time

from can.exceptions import error_check
from can.interfaces.slcan import slcanBus

# How long one blocking read of an empty port waits: the reader's own recv() timeouts (its
# batch window, its stop check) are honoured to within this, and a quiet port wakes 100×/s
# instead of python-can's 1,000×/s.
PORT_TIMEOUT_S = 0.01
# An SLCAN line is at most ~140 bytes (a CAN FD frame); a longer run without a terminator is
# noise (wrong baud rate, a device that is not an SLCAN adapter): drop it instead of growing.
MAX_LINE = 256
READ_SIZE = 4096


class SlcanBus(slcanBus):
    """`interface = "slcan"` with block reads; same arguments as python-can's `slcanBus`."""

    def __init__(self, channel, *args, timeout: float = PORT_TIMEOUT_S, **kwargs):
        super().__init__(channel, *args, timeout=timeout, **kwargs)

    def _read(self, timeout: float | None) -> str | None:
        """The next line with its terminator (`\\r`, or `\\a` for an error), or None once
        `timeout` seconds pass without one."""
        buf = self._buffer
        fd = self.serialPortOrig.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        with error_check("Could not read from serial device"):
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
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    left = 0.0
                if select.select([fd], [], [], left)[0]:
                    try:
                        chunk = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise OSError("device gone")
                    buf += chunk
                elif left == 0.0:
                    return None
