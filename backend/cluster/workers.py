"""`python -m backend --reuseport N`: a supervisor and N gateway worker processes on one UDP
port, steered by the server id of each datagram's destination CID (reuseport.py,
docs/scaling.md §4 "Both cores of one host").

The process model:

- the supervisor binds the port's N member sockets itself, in order, so that member i is the
  socket of the worker with server id i, attaches the steering program, makes one AF_UNIX
  datagram socketpair per pair of workers (their CID relay, relay.py), and starts each worker
  as `python -m backend --reuseport-worker I:FD:N:CHANNELS …` with its socket and its channel
  ends inherited. It serves nothing itself; it keeps the N sockets and the channels open for
  as long as it runs;
- each worker is a whole backend (gateway, its own writer into the shared PostgreSQL, alerts,
  dispatch, hub, HTTP API on the same TCP port with SO_REUSEPORT, NATS fan-out): a node of the
  cluster whose router is the kernel. Exactly-once, per-vehicle ownership and hand-over are the
  cluster's (§2): a vehicle's owner is the worker whose connection carries its session;
- a worker that dies is started again on the same inherited socket. Because the supervisor
  still holds that socket, the group's order never changes, so member i stays server id i for
  the life of the supervisor (a socket closed and bound again would join at the end of the
  group, and the kernel moves its last member into a closed member's place: steering by index
  would then send one worker's CIDs to another). Until the new worker reads, the dead one's
  datagrams wait in its socket's buffer: its vehicles' connections are gone with it, and they
  reconnect (their new Initial lands on the member its DCID hashes to) and re-send what was not
  acknowledged, which the store keeps once.
- the supervisor stops its workers on SIGTERM/SIGINT (each finishes in flight, as one backend
  does), and the kernel stops them when the supervisor dies otherwise (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time

from .reuseport import attach, reuseport_socket

log = logging.getLogger(__name__)

# A worker that dies is started again after this long, doubled while it keeps dying young
# (a database that is away at start) up to RESPAWN_MAX_S, so a broken setup does not spin.
RESPAWN_S = 0.5
RESPAWN_MAX_S = 30.0
# A worker that ran this long is healthy: its next death starts from RESPAWN_S again.
HEALTHY_S = 60.0
# How long the workers get to finish in flight (commit, ack) after SIGTERM before SIGKILL:
# the gateway's own graceful stop takes seconds (backend/gateway.py finish_in_flight).
STOP_GRACE_S = 20.0
# <linux/prctl.h>: the signal a process gets when its parent dies
PR_SET_PDEATHSIG = 1
# How often the supervisor looks at its workers.
POLL_S = 0.2


def bind_group(host: str, port: int, n: int) -> list[socket.socket]:
    """The port's n member sockets, bound in order (port 0: the kernel picks it once), with
    the steering program attached: member i gets the datagrams of server id i. A port some
    socket holds already is refused (OSError), also when that socket is in a reuseport group
    of this user (another supervisor still running), which the group would otherwise take in
    silently, its members before ours; port 0 takes a port no socket holds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:  # a plain bind: free, or EADDRINUSE
        probe.bind((host, port))
        port = probe.getsockname()[1]
    first = reuseport_socket(host, port)
    socks = [first]
    try:
        port = first.getsockname()[1]
        socks += [reuseport_socket(host, port) for _ in range(n - 1)]
        attach(first, n)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


def relay_channels(n: int) -> list[dict[int, socket.socket]]:
    """One AF_UNIX datagram socketpair per pair of the n workers (their CID relay,
    relay_edge.py): for each worker, sibling index → its end."""
    ends: list[dict[int, socket.socket]] = [{} for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            ends[i][j], ends[j][i] = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    return ends


def worker_flag(server_id: int, fd: int, group: int = 0,
                channels: dict[int, int] | None = None) -> list[str]:
    """SERVER_ID:FD, or SERVER_ID:FD:GROUP:C0,C1,… with the fd of the relay channel to each
    member (`-` for itself)."""
    if not channels:
        return ["--reuseport-worker", f"{server_id}:{fd}"]
    fds = ",".join(str(channels[m]) if m in channels else "-" for m in range(group))
    return ["--reuseport-worker", f"{server_id}:{fd}:{group}:{fds}"]


def parse_worker_flag(text: str) -> tuple[int, int, int, dict[int, int]]:
    """(server id, socket fd, group size, member → relay channel fd)."""
    parts = text.split(":")
    bad = ValueError(f"--reuseport-worker: expected SERVER_ID:FD[:GROUP:CHANNELS], got {text!r}")
    if len(parts) not in (2, 4) or not all(p.isdigit() for p in parts[:3]):
        raise bad
    sid, fd = int(parts[0]), int(parts[1])
    if len(parts) == 2:
        return sid, fd, 0, {}
    group, fds = int(parts[2]), parts[3].split(",")
    if len(fds) != group or not sid < group:
        raise bad
    channels = {}
    for m, f in enumerate(fds):
        if (m == sid) != (f == "-") or (m != sid and not f.isdigit()):
            raise bad
        if m != sid:
            channels[m] = int(f)
    return sid, fd, group, channels


class Supervisor:
    """Starts the workers, starts a dead one again, stops them all on SIGTERM/SIGINT."""

    def __init__(self, argv: list[str], socks: list[socket.socket]):
        self.argv = argv
        self.socks = socks
        # kept open for as long as the supervisor runs, as the sockets are: a worker started
        # again finds its channels (and what its siblings announced meanwhile) in place
        self.channels = relay_channels(len(socks))
        self.procs: list[subprocess.Popen | None] = [None] * len(socks)
        self.started = [0.0] * len(socks)
        self.delay = [RESPAWN_S] * len(socks)
        self.due = [0.0] * len(socks)
        self.stopping = False

    def spawn(self, i: int) -> None:
        fd = self.socks[i].fileno()
        channels = {m: s.fileno() for m, s in self.channels[i].items()}
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "backend", *worker_flag(i, fd, len(self.socks), channels),
             *self.argv], pass_fds=(fd, *channels.values()), preexec_fn=_stop_with_parent)
        self.started[i] = time.monotonic()
        log.info("reuseport worker %d started (pid %d)", i, self.procs[i].pid)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        port = self.socks[0].getsockname()[1]
        for i in range(len(self.socks)):
            self.spawn(i)
        print(f"backend supervisor ready: {len(self.socks)} gateway workers on udp port "
              f"{port}", flush=True)
        while not self.stopping:
            self.check(time.monotonic())
            time.sleep(POLL_S)
        return self.stop()

    def check(self, now: float) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                ran = now - self.started[i]
                self.delay[i] = RESPAWN_S if ran >= HEALTHY_S else min(
                    RESPAWN_MAX_S, self.delay[i] * 2)
                log.warning("reuseport worker %d (pid %d) exited with %s; again in %.1f s",
                            i, proc.pid, proc.returncode, self.delay[i])
                self.procs[i] = None
                self.due[i] = now + self.delay[i]
            elif proc is None and now >= self.due[i]:
                self.spawn(i)

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def stop(self) -> int:
        live = [p for p in self.procs if p is not None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for s in self.socks:
            s.close()
        for ends in self.channels:
            for s in ends.values():
                s.close()
        return 0


def _stop_with_parent() -> None:
    """In the forked worker before exec: SIGTERM when the supervisor dies (even by kill -9),
    so no worker outlives it on the port; the signal stays set across exec (prctl(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_supervisor(argv: list[str], host: str, port: int, n: int) -> int:
    """`python -m backend --reuseport N` (argv: its own arguments, passed on to the workers)."""
    socks = bind_group(host, port, n)
    return Supervisor(argv, socks).run()

