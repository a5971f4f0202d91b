"""Is the host clock synchronised? The kernel's NTP status, as `timedatectl` reports it.

adjtimex(2) with no mode bits only reads: it returns TIME_ERROR, or sets STA_UNSYNC in
`status`, while no time daemon (chrony, systemd-timesyncd, ntpd) disciplines the clock.
ctypes instead of a subprocess: it runs in microseconds and needs no timedatectl.
"""

from __future__ import annotations

import ctypes
import ctypes.util

TIME_ERROR = 5  # adjtimex return value: clock not synchronised
STA_UNSYNC = 0x0040  # status bit: clock not synchronised


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> on Linux (glibc); the trailing padding is 11 ints.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def host_clock_synchronised() -> bool:
    """True if the kernel says a time daemon keeps the clock synchronised; False if it says
    not, or if it cannot be asked (not Linux, no libc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state not in (-1, TIME_ERROR) and not tx.status & STA_UNSYNC
