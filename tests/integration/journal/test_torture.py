"""kill -9 torture: a child process appends and commits in a loop and reports each accepted
seq over a pipe; the parent kills it at random moments. Every reported reading must survive."""

from __future__ import annotations

import os
import random
import select
import signal
import time

from agent.journal import Journal
from tests.integration.journal.conftest import T0, integrity, pos, raw_seqs, sig

MIN_KILLS = 100
MAX_KILLS = 140
TIME_BUDGET_S = 75.0


def _child(path: str, wfd: int, seed: int) -> None:
    rng = random.Random(seed)
    try:
        j = Journal(path)
        ts = T0 + j.next_seq * 100
        while True:
            batch = []
            for _ in range(rng.randint(1, 60)):
                ts += 100
                batch.append(pos(ts) if rng.random() < 0.7 else sig(ts))
            seqs = j.append(batch)
            # only after append returned: these readings are accepted
            os.write(wfd, f"A {seqs[0]} {seqs[-1]} {len(seqs)}\n".encode())
            if rng.random() < 0.1:
                low, high = j.acked_through(), j.next_seq - 1
                through = rng.randint(low, high)
                os.write(wfd, f"k {through}\n".encode())  # intent: may delete up to here
                j.acknowledge(through, [])
    finally:
        os._exit(3)


def test_kill9_torture_loses_no_accepted_reading(jpath):
    rng = random.Random(6)
    accepted: list[int] = []
    max_ack_intent = 0
    kills = 0
    killed_mid_open = 0
    start = time.monotonic()
    while kills < MAX_KILLS and time.monotonic() - start < TIME_BUDGET_S:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            _child(jpath, wfd, rng.randrange(1 << 30))
        os.close(wfd)
        # kill anywhere: during open/quick_check (short waits) or mid-stream (longer)
        wait = rng.choice([rng.uniform(0, 0.03), rng.uniform(0.03, 0.4)])
        deadline = time.monotonic() + wait
        buf = b""
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([rfd], [], [], left)
            if ready:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                buf += chunk
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"child ended by itself: status {status}"
        while chunk := os.read(rfd, 65536):  # lines written before the kill count too
            buf += chunk
        os.close(rfd)
        kills += 1
        if not buf:
            killed_mid_open += 1
        for line in buf.decode().splitlines():
            parts = line.split()
            if parts[0] == "A":
                first, last, n = map(int, parts[1:])
                assert last - first + 1 == n
                accepted.extend(range(first, last + 1))
            elif parts[0] == "k":
                max_ack_intent = max(max_ack_intent, int(parts[1]))
    elapsed = time.monotonic() - start
    assert kills >= MIN_KILLS, f"only {kills} kills in {elapsed:.0f} s"
    assert len(accepted) > 1000, "the children accepted too little to prove anything"
    # sequence numbers never repeat, across all the killed processes
    assert len(accepted) == len(set(accepted))
    assert integrity(jpath) == "ok"
    present = set(raw_seqs(jpath))
    lost = [q for q in accepted if q not in present and q > max_ack_intent]
    assert not lost, f"{len(lost)} accepted readings lost, e.g. {lost[:10]}"
    # and a fresh open continues after every seq ever handed out
    j = Journal(jpath)
    try:
        assert j.next_seq > max(accepted)
        assert j.moved_aside is None
    finally:
        j.close()
    print(f"{kills} kills ({killed_mid_open} before any commit) in {elapsed:.0f} s, "
          f"{len(accepted)} readings accepted")
