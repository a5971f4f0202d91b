"""End to end with real processes: pty GPS → agent → QUIC → gateway → SQLite → WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
import time

import aiohttp
import pytest

from tests.conftest import wait_for


def assert_matches_sent(stored: list[tuple], sent: list[dict]) -> None:
    """Every stored position equals the fix the simulator encoded at that GNSS time."""
    by_time = {s["ts_ms"]: s for s in sent}
    for _epoch, seq, time_ms, lat, lon, speed, course, alt in stored:
        s = by_time.get(time_ms)
        assert s is not None, f"seq {seq}: stored time {time_ms} was never sent"
        assert (lat, lon) == (s["lat"], s["lon"]), f"seq {seq}"
        assert speed == pytest.approx(s["speed_kmh"], abs=1e-6)
        assert course == s["course_deg"] and alt == s["alt_m"]


def assert_exactly_once(stored: list[tuple]) -> None:
    seqs = [row[1] for row in stored]
    times = [row[2] for row in stored]
    assert len(set(row[0] for row in stored)) == 1, "one journal epoch"
    assert seqs == list(range(1, len(seqs) + 1)), "seqs contiguous from 1, no gap, no duplicate"
    assert len(set(times)) == len(times), "no reading stored twice under another seq"


def journal_state(path) -> tuple[int, int]:
    """(pending rows, next seq) of an agent journal on disk; (0, 0) before it exists."""
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path, timeout=10) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name='readings'").fetchone():
            return 0, 0  # the journal creates its tables and meta rows in one transaction
        pending = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        next_seq = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
    return pending, next_seq


class WsCollector(threading.Thread):
    """A WebSocket client in its own thread, collecting hub messages for one topic."""

    def __init__(self, port: int, topic: str, token: str):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/ws"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.topic = topic
        self.messages: list[dict] = []
        self.subscribed = threading.Event()
        self._stopping = False

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with aiohttp.ClientSession(headers=self.headers) as http, \
                http.ws_connect(self.url) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "topic": self.topic}))
            while not self._stopping:
                try:
                    msg = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("event") == "subscribed":
                    self.subscribed.set()
                self.messages.append(data)

    def stop(self) -> None:
        self._stopping = True
        self.join(5)

    def features(self) -> list[dict]:
        return [m["feature"] for m in self.messages if "feature" in m]


def test_gps_to_map_values_and_websocket(procs):
    procs.provision("truck-1")
    procs.backend()
    ws = WsCollector(procs.http_port, "vehicle:truck-1", procs.api_token("viewer"))
    ws.start()
    assert ws.subscribed.wait(10)
    sim = procs.gps_sim("truck-1", rate=10, count=50)
    agent = procs.agent("truck-1")
    wait_for(lambda: len(procs.stored("truck-1")) == 50, 40, "50 readings stored")
    sim.popen.wait(10)
    stored, sent = procs.stored("truck-1"), procs.sent("truck-1")
    assert len(sent) == 50
    assert_exactly_once(stored)
    assert_matches_sent(stored, sent)
    wait_for(lambda: ws.features() and ws.features()[-1]["properties"]["seq"] == 50, 10,
             "the last position on the WebSocket")
    ws.stop()
    features = ws.features()
    last = features[-1]
    assert last["type"] == "Feature" and last["geometry"]["type"] == "Point"
    assert last["geometry"]["coordinates"] == [sent[-1]["lon"], sent[-1]["lat"]]
    assert last["properties"]["vehicle"] == "truck-1"
    times = [f["properties"]["time"] for f in features]
    assert times == sorted(times), "the map never moves a vehicle backwards in time"
    assert agent.alive()
    assert agent.stop() == 0, agent.text()


def test_backend_down_agent_journals_then_drains(procs):
    procs.provision("truck-2")
    procs.gps_sim("truck-2", rate=10, count=60)
    agent = procs.agent("truck-2")
    # no backend yet: the agent keeps accepting into its journal
    wait_for(lambda: journal_state(procs.journal("truck-2"))[0] >= 30, 30,
             "30 journaled readings")
    assert procs.stored("truck-2") == []
    procs.backend()
    wait_for(lambda: len(procs.stored("truck-2")) == 60, 60, "all 60 readings stored")
    stored = procs.stored("truck-2")
    assert_exactly_once(stored)
    assert_matches_sent(stored, procs.sent("truck-2"))
    wait_for(lambda: journal_state(procs.journal("truck-2"))[0] == 0, 10, "journal drained")
    assert agent.stop() == 0


def holds_open(pid: int, path: str) -> bool:
    """Whether process `pid` has `path` (resolved) open."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == path
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # gone, or an fd closed while listed
        return False


def test_agent_sigkill_mid_stream_loses_and_duplicates_nothing(procs):
    procs.provision("truck-3")
    procs.backend()
    sim = procs.gps_sim("truck-3", rate=10, count=150)
    tty = os.path.realpath(procs.tty("truck-3"))
    agent = procs.agent("truck-3")
    for kills in range(3):
        target = 25 * (kills + 1)
        wait_for(lambda t=target: len(procs.stored("truck-3")) >= t, 30, f"{target} stored")
        # the receiver goes quiet while no agent runs (as if the restart were instant): what
        # a kill may lose is then the agent's own (fixes not yet committed), not the fixes a
        # slow restart on a loaded machine would miss
        sim.popen.send_signal(signal.SIGSTOP)
        agent.kill9()
        agent = procs.agent("truck-3")
        wait_for(lambda a=agent: holds_open(a.popen.pid, tty), 60, "the new agent's port open")
        sim.popen.send_signal(signal.SIGCONT)
    sim.popen.wait(60)
    pending_next = lambda: journal_state(procs.journal("truck-3"))  # noqa: E731
    wait_for(lambda: pending_next()[0] == 0 and len(procs.stored("truck-3")) > 100, 40,
             "journal drained after the kills")
    _, next_seq = pending_next()
    stored = procs.stored("truck-3")
    # every reading the journal accepted (seq 1 … next_seq-1) is stored exactly once
    assert [r[1] for r in stored] == list(range(1, next_seq))
    assert_exactly_once(stored)
    sent = procs.sent("truck-3")
    assert_matches_sent(stored, sent)
    # Fixes never accepted are those in memory at the kill (< one 100 ms commit interval) and
    # those the port discarded while the agent restarted (pyserial flushes input on open):
    # at most one short run of consecutive fixes per kill, nothing scattered.
    stored_times = {r[2] for r in stored}
    missing = [i for i, s in enumerate(sent) if s["ts_ms"] not in stored_times]
    runs = [i for i in missing if i - 1 not in missing]
    assert len(runs) <= 3, f"missing fixes at {missing}"
    assert len(missing) <= 3 * 20, f"lost {len(missing)} of {len(sent)} unaccepted fixes"
    assert agent.stop() == 0


def test_garbage_on_serial_line_does_not_stop_the_agent(procs):
    procs.provision("truck-4")
    procs.backend()
    procs.gps_sim("truck-4", rate=10, count=60, garbage_every=2)
    agent = procs.agent("truck-4")
    sent_all = lambda: len(procs.sent("truck-4")) == 60  # noqa: E731
    wait_for(sent_all, 30, "simulator finished")
    # the simulator writes noise and a corrupted sentence before every second epoch: that
    # epoch may have lost a sentence, so it gives no position (agent/gps/epoch.py); the other
    # epochs all come through (but perhaps the first: while the decoder still learns the
    # receiver's cycle, it cannot tell which of two epochs a loss belongs to)
    clean = {s["ts_ms"] for i, s in enumerate(procs.sent("truck-4")) if i % 2 == 0}
    wait_for(lambda: len(procs.stored("truck-4")) >= len(clean) - 1, 30,
             "the clean epochs' fixes stored")
    wait_for(lambda: journal_state(procs.journal("truck-4"))[0] == 0, 30, "journal drained")
    stored = procs.stored("truck-4")
    assert {row[2] for row in stored} <= clean
    assert_exactly_once(stored)
    assert_matches_sent(stored, procs.sent("truck-4"))
    assert agent.alive(), agent.text()
    assert "Traceback" not in agent.text()
    assert agent.stop() == 0


def test_backend_sigterm_acknowledges_what_it_committed(procs):
    procs.provision("truck-5")
    # a lingering writer keeps batches submitted-but-uncommitted at any moment, so SIGTERM
    # always lands with work in flight
    backend = procs.backend("--writer-linger-ms", "500")
    procs.gps_sim("truck-5", rate=10, count=120)
    agent = procs.agent("truck-5")
    wait_for(lambda: len(procs.stored("truck-5")) >= 40, 30, "40 readings stored")
    assert backend.stop() == 0, backend.text()
    assert "Traceback" not in backend.text()
    time.sleep(0.5)
    stored = {r[1] for r in procs.stored("truck-5")}
    with sqlite3.connect(procs.journal("truck-5"), timeout=10) as db:
        pending = {r[0] for r in db.execute("SELECT seq FROM readings")}
    # everything the backend committed before exiting was acknowledged (and so deleted)
    assert stored and not (stored & pending), sorted(stored & pending)[:10]
    procs.backend()
    wait_for(lambda: journal_state(procs.journal("truck-5"))[0] == 0
             and len(procs.stored("truck-5")) >= 110, 60, "drained after the restart")
    assert_exactly_once(procs.stored("truck-5"))
    assert agent.stop() == 0
