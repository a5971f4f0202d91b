"""Child processes that stop with their parent, even when the parent is killed with SIGKILL,
and stopping a set of them in order (`stop_all`).

Linux's PR_SET_PDEATHSIG (prctl(2)) makes the kernel send the child a signal when its parent
dies; set between fork and exec (`preexec_fn`), it survives exec. SIGTERM, so an agent still
commits its journal on the way out. If the parent died before the prctl took effect, the child
sees a new parent and exits at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM):
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when this process dies."""
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:  # the parent was already gone
            os._exit(1)

    return preexec


def stop_all(procs: Sequence[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM to every running process, last started first (consumers before what they
    use), then SIGKILL to those still running `grace_s` after, and reap them all."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
