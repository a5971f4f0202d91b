"""The HIL rig for users: `python -m hil SCENARIO` drives a real backend and a real agent on
loopback through a scenario and prints what happened to every reading.

Processes: the backend (`python -m backend`, embedded SQLite store), a GPS (hil.gps_sim on a pty,
or the user's own NMEA capture played onto a pty with `--nmea`), optionally CAN (the user's
`--candump` log replayed with `--dbc`), and the agent (`python -m agent`). Between agent and
gateway sits hil.linkemu's emulator, in this process, so the scenario can black the link out.

Report: `sent` fixes (the simulator's record, or what nmea-decode finds in the capture),
`accepted` readings the agent's journal committed (sequence numbers handed out), `stored`
readings in the backend, `lost` accepted readings never stored, `duplicated` readings stored
twice (same epoch and seq), `unread` fixes the GPS sent that no agent took in (a serial line
does not wait while the agent is down: expected in `crash`, nowhere else), and `recover_s`: from
the end of the disturbance until every accepted reading was stored.

Scenarios here: drive, tunnel (a blackout; `--blackout-s`, 120 and 900 in `make hil`), crash
(kill -9 of the agent `--crashes` times at random moments, restarted as systemd would).
handover, reboot, power-cut and disk-full run in namespaces or the VM: see `python -m hil`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hil.lifeline import die_with_parent
from hil.linkemu import LinkEmulator

REPO = Path(__file__).resolve().parent.parent
VEHICLE = "hil-1"
# the agent's liveness probe and backoff bring it back within seconds of the link's return;
# past this the scenario reports a failure to recover instead of waiting forever
RECOVER_LIMIT_S = 180.0
STARTUP_S = 60.0
NMEA_PLAY_BYTES_S = 960  # 9600 baud


@dataclass
class Report:
    scenario: str
    sent: int = 0
    accepted: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unread: int = 0
    backlog_after: int = 0  # readings waiting in the journal when the disturbance ended
    recover_s: float | None = None
    ok: bool = False

    def text(self) -> str:
        rec = "-" if self.recover_s is None else f"{self.recover_s:.1f} s"
        return (f"{self.scenario}: sent {self.sent}  accepted {self.accepted}  stored "
                f"{self.stored}  lost {self.lost}  duplicated {self.duplicated}  "
                f"unread {self.unread}  backlog after {self.backlog_after}  "
                f"time to recover {rec}  {'OK' if self.ok else 'FAILED'}")


class Rig:
    """The processes of one scenario run, all stopped at exit (and with this process)."""

    def __init__(self, workdir: Path, args):
        self.dir = workdir
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.agent: subprocess.Popen | None = None
        self.db = workdir / "fleet.db"
        self.tty = workdir / "gps.tty"
        self.record = workdir / "sent.jsonl"
        self.emu: LinkEmulator | None = None

    def spawn(self, name: str, *args: str, stdout=None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, *args], stdout=stdout or log, stderr=log,
                                env=env, cwd=REPO, preexec_fn=die_with_parent())
        self.procs.append(proc)
        return proc

    async def start(self) -> None:
        from backend.pki import generate
        from backend.store import open_store

        self.pki = generate(str(self.dir / "pki"), ["localhost", "127.0.0.1"])
        store = open_store(f"sqlite://{self.db}")
        await store.open()
        self.token = await store.add_vehicle(VEHICLE)
        await store.close()
        quic = _free_port()
        backend = self.spawn("backend", "-m", "backend", "--db", f"sqlite://{self.db}",
                             "--cert", self.pki["cert"], "--key", self.pki["key"],
                             "--quic-host", "127.0.0.1", "--quic-port", str(quic),
                             "--http-port", str(_free_port(tcp=True)),
                             stdout=subprocess.PIPE)
        line = await asyncio.to_thread(backend.stdout.readline)
        if b"backend ready" not in line:
            raise RuntimeError(f"backend did not start; see {self.dir / 'backend.log'}")
        self.emu = await LinkEmulator(("127.0.0.1", quic)).start()
        if self.args.nmea:
            asyncio.get_running_loop().create_task(self._play_nmea(Path(self.args.nmea)))
        else:
            self.spawn("gps", "-m", "hil.gps_sim", "--link", str(self.tty), "--rate",
                       str(self.args.rate), "--count", str(self.args.fixes), "--record",
                       str(self.record), "--wait-reader")
        await _until(self.tty.exists, 10, "the GPS pty")
        self.start_agent()

    def config(self) -> Path:
        path = self.dir / "agent.toml"
        host, port = self.emu.address
        text = (f'[vehicle]\nid = "{VEHICLE}"\ntoken = "{self.token}"\n\n'
                f'[server]\nhost = "{host}"\nport = {port}\nca_file = "{self.pki["ca"]}"\n'
                f'server_name = "localhost"\n\n[journal]\npath = "{self.dir / "journal.sqlite"}"'
                f'\ncommit_interval_ms = 100\n'
                # a user's capture may be weeks old: keep it (the default drops after 168 h)
                f'max_age_h = 1000000\n\n[gps]\ndevice = "{self.tty}"\nbaud = 9600\n'
                'decimate = false\n')
        if self.args.candump:
            text += (f'\n[[can.bus]]\nname = "user"\ninterface = "replay"\n'
                     f'replay = "{Path(self.args.candump).resolve()}"\ntimestamps = "now"\n'
                     f'dbc = {json.dumps([str(Path(d).resolve()) for d in self.args.dbc])}\n')
        path.write_text(text)
        return path

    def start_agent(self) -> None:
        self.agent = self.spawn("agent", "-m", "agent", "--config", str(self.config()))

    def kill9_agent(self) -> None:
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)

    async def _play_nmea(self, capture: Path) -> None:
        """The user's capture onto a pty at 9600 baud, once, as a receiver would send it."""
        master, slave = os.openpty()
        os.symlink(os.ttyname(slave), self.tty)
        data = capture.read_bytes()
        # a port flushes its input when opened: start once the agent holds it open
        await _until(lambda: self.agent is not None and _holds(self.agent.pid,
                                                               os.ttyname(slave)),
                     STARTUP_S, "the agent to open the GPS port")
        await asyncio.sleep(0.5)
        for i in range(0, len(data), NMEA_PLAY_BYTES_S // 10):
            await asyncio.sleep(0.1)
            os.write(master, data[i:i + NMEA_PLAY_BYTES_S // 10])
        self._nmea_done = True

    def sent(self) -> list[tuple]:
        """(time_ms, lat, lon) of every fix the GPS side sent."""
        if self.args.nmea:
            out = subprocess.run([sys.executable, "-m", "agent", "nmea-decode", self.args.nmea],
                                 capture_output=True, text=True, cwd=REPO, check=True)
            fixes = [json.loads(s) for s in out.stdout.splitlines() if s.strip()]
            return [(_ms(f["time"]), f["lat"], f["lon"]) for f in fixes if "time" in f]
        if not self.record.exists():
            return []
        rows = [json.loads(s) for s in self.record.read_text().splitlines() if s.strip()]
        return [(r["ts_ms"], r["lat"], r["lon"]) for r in rows]

    def stored(self) -> tuple[list[tuple], int, int]:
        """Positions stored, distinct readings stored, and readings stored more than once."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as db:
            pos = db.execute("SELECT time_ms, lat, lon FROM vehicle_telemetry "
                             "WHERE vehicle_id=? AND kind='pos'", (VEHICLE,)).fetchall()
            total, distinct = db.execute(
                "SELECT count(*), count(DISTINCT epoch || ':' || seq) "
                "FROM vehicle_telemetry WHERE vehicle_id=?", (VEHICLE,)).fetchone()
        return pos, distinct, total - distinct

    def journal(self) -> tuple[int, int]:
        """(readings waiting, readings ever accepted) from the agent's own journal file."""
        path = self.dir / "journal.sqlite"
        if not path.exists():
            return -1, 0
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            waiting = db.execute("SELECT count(*) FROM readings").fetchone()[0]
            row = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        return waiting, (row[0] - 1) if row else 0

    def gps_done(self) -> bool:
        if self.args.nmea:
            return getattr(self, "_nmea_done", False)
        return self.procs[1].poll() is not None

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.emu:
            self.emu.close()


async def run(scenario: str, args, workdir: Path) -> Report:
    rig = Rig(workdir, args)
    report = Report(scenario)
    rng = random.Random(args.seed)
    try:
        await rig.start()
        await _until(lambda: rig.stored()[1] > 0, STARTUP_S, "the first stored reading")
        disturbed_until = time.monotonic()
        if scenario == "tunnel":
            rig.emu.blackout(args.blackout_s)
            await asyncio.sleep(args.blackout_s)
            disturbed_until = time.monotonic()
        elif scenario == "crash":
            for _ in range(args.crashes):
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                rig.kill9_agent()
                await asyncio.sleep(1.0)  # systemd's RestartSec=2, shortened
                rig.start_agent()
            disturbed_until = time.monotonic()
        report.backlog_after = max(0, rig.journal()[0])
        # recovered: the backlog is down to what one second of live readings leaves in flight
        live = max(2, int(args.rate) * 2)
        if await _until(lambda: 0 <= rig.journal()[0] <= live, RECOVER_LIMIT_S,
                        "the backlog to drain", quiet=True):
            report.recover_s = time.monotonic() - disturbed_until
        await _until(rig.gps_done, RECOVER_LIMIT_S + args.fixes / args.rate, "the GPS to end")
        await asyncio.sleep(1.0)  # the last fix's commit
        sent = rig.sent()
        def drained() -> bool:
            waiting, accepted = rig.journal()
            return waiting == 0 and rig.stored()[1] >= accepted
        if not await _until(drained, RECOVER_LIMIT_S, "the backlog to be stored", quiet=True):
            report.recover_s = None
        positions, distinct, dups = rig.stored()
        stored = set(positions)
        report.sent = len(sent)
        report.accepted = rig.journal()[1]
        report.stored = distinct
        report.lost = max(0, report.accepted - distinct)
        report.duplicated = dups + (len(positions) - len(stored))
        report.unread = sum(1 for fix in set(sent) if fix not in stored)
        report.ok = (report.lost == 0 and report.duplicated == 0 and report.sent > 0
                     and report.recover_s is not None
                     and (report.unread == 0 or scenario == "crash"))
    finally:
        rig.stop()
    return report


def _holds(pid: int, path: str) -> bool:
    """Whether process `pid` has `path` open (from /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def _ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _free_port(tcp: bool = False) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(predicate, timeout: float, what: str, quiet: bool = False) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    if quiet:
        return False
    raise TimeoutError(f"no {what} within {timeout:.0f} s")


def as_json(report: Report) -> str:
    return json.dumps(asdict(report))
