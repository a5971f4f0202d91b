"""The processes of a HIL scenario (hil/scenarios.py) and the accounting of its report.

Processes: the backend (`python -m backend`, embedded SQLite store), a GPS (hil.gps_sim on a pty,
or the user's own NMEA capture played onto a pty with `--nmea`), optionally CAN (the user's
`--candump` log replayed with `--dbc`), and the agent (`python -m agent`, in its own process
group, as systemd runs a service). Between agent and gateway sits hil.linkemu's emulator, in
this process, so a scenario can black the link out or rebind its address.

Report: `sent` fixes (the simulator's record, or what nmea-decode finds in the capture),
`accepted` readings the agent's journal committed (sequence numbers handed out; for power cuts
also what the agent logged as accepted, since a lost commit would roll the journal back),
`stored` distinct readings in the backend, `lost` accepted readings never stored, `duplicated`
readings stored twice (same epoch and seq, or the same fix twice), `unread` fixes the GPS sent
that were never stored (a serial line does not wait while the agent is down: expected when the
agent dies, nowhere else), and `recover_s`: from the end of the disturbance until the backlog
was down to what live readings keep in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from geostream.secretfile import write_private
from hil.lifeline import die_with_parent, stop_all
from hil.linkemu import LinkEmulator
from hil.netns import BACKEND_ADDR
from hil.waits import holds, ms, until

REPO = Path(__file__).resolve().parent.parent
VEHICLE = "hil-1"
STARTUP_S = 60.0
NMEA_PLAY_BYTES_S = 960  # 9600 baud
BACKEND_PORT = 4433  # in the backend's own namespace (--netns): no other listener there
AGENT_START_MARK = "--- hil: agent start ---"  # written to agent.log before each start
_ACCEPTED_LINE = re.compile(r"\((\d+) accepted since start\)")  # agent/daemon.py's DEBUG line


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
    detail: dict = field(default_factory=dict)  # what the scenario did, its own figures

    def text(self) -> str:
        rec = "-" if self.recover_s is None else f"{self.recover_s:.1f} s"
        extra = "".join(f"\n  {k}: {v}" for k, v in self.detail.items())
        return (f"{self.scenario}: sent {self.sent}  accepted {self.accepted}  stored "
                f"{self.stored}  lost {self.lost}  duplicated {self.duplicated}  "
                f"unread {self.unread}  backlog after {self.backlog_after}  "
                f"time to recover {rec}  {'OK' if self.ok else 'FAILED'}{extra}")


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
        # the journal in a directory of its own: disk-full mounts a small file system there,
        # power-cut rolls its files back to what was fsynced
        self.journal_dir = workdir / "journal"
        self.journal_dir.mkdir(exist_ok=True)
        self.socket = workdir / "status.sock"
        self.agent_env: dict[str, str] = {}  # e.g. LD_PRELOAD for power-cut (hil/powercut.py)
        self.log_level = "info"
        self.emu: LinkEmulator | None = None
        self.net = None  # hil.netns.NetnsRig with --netns: backend and agent in namespaces

    def spawn(self, name: str, *args: str, stdout=None, env: dict | None = None,
              group: bool = False, ns: str | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        prefix = self.net.exec_args(ns) if ns else []
        proc = subprocess.Popen([*prefix, sys.executable, *args], stdout=stdout or log, stderr=log,
                                env=env, cwd=REPO, preexec_fn=die_with_parent(),
                                start_new_session=group)
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
        # with --netns the backend listens in its namespace and the agent reaches it over the
        # vehicle's uplinks (hil/netns.py), without the link emulator
        # on loopback port 0: the kernel's choice, read back from the ready line
        host, quic = (BACKEND_ADDR, BACKEND_PORT) if self.net else ("127.0.0.1", 0)
        backend = self.spawn("backend", "-m", "backend", "--db", f"sqlite://{self.db}",
                             "--cert", self.pki["cert"], "--key", self.pki["key"],
                             "--quic-host", host, "--quic-port", str(quic),
                             "--http-port", "0", stdout=subprocess.PIPE,
                             ns=self.net.backend if self.net else None)
        line = await asyncio.to_thread(backend.stdout.readline)
        if b"backend ready" not in line:
            raise RuntimeError(f"backend did not start; see {self.dir / 'backend.log'}")
        quic = int(line.decode().split("gateway udp ", 1)[1].rsplit(":", 1)[1])
        self.server = (host, quic)
        if not self.net:
            self.emu = await LinkEmulator((host, quic)).start()
            self.server = self.emu.address
        if self.args.nmea:
            asyncio.get_running_loop().create_task(self._play_nmea(Path(self.args.nmea)))
        else:
            self.spawn("gps", "-m", "hil.gps_sim", "--link", str(self.tty), "--rate",
                       str(self.args.rate), "--count", str(self.args.fixes), "--record",
                       str(self.record), "--wait-reader")
        await until(self.tty.exists, 10, "the GPS pty")
        self.start_agent()

    def config(self) -> Path:
        path = self.dir / "agent.toml"
        host, port = self.server
        text = (f'[vehicle]\nid = "{VEHICLE}"\ntoken = "{self.token}"\n\n'
                f'[server]\nhost = "{host}"\nport = {port}\nca_file = "{self.pki["ca"]}"\n'
                f'server_name = "localhost"\n\n[journal]\npath = "{self.journal_path}"'
                f'\ncommit_interval_ms = 100\n'
                # a user's capture may be weeks old: keep it (the default drops after 168 h)
                f'max_age_h = 1000000\n\n[gps]\ndevice = "{self.tty}"\nbaud = 9600\n'
                f'decimate = false\n\n[status]\nsocket = "{self.socket}"\n\n'
                f'[log]\nlevel = "{self.log_level}"\n')
        if self.args.candump:
            text += (f'\n[[can.bus]]\nname = "user"\ninterface = "replay"\n'
                     f'replay = "{Path(self.args.candump).resolve()}"\ntimestamps = "now"\n'
                     f'dbc = {json.dumps([str(Path(d).resolve()) for d in self.args.dbc])}\n')
        write_private(path, text.encode())  # it holds the vehicle's token
        return path

    @property
    def journal_path(self) -> Path:
        return self.journal_dir / "journal.sqlite"

    def start_agent(self) -> None:
        with open(self.dir / "agent.log", "ab") as log:  # where one run's lines begin
            log.write(f"{AGENT_START_MARK}\n".encode())
        self.agent = self.spawn("agent", "-m", "agent", "--config", str(self.config()),
                                env=self.agent_env, group=True,
                                ns=self.net.vehicle if self.net else None)

    def kill9_agent(self) -> None:
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)

    def kill_agent_group(self, sig: int = signal.SIGKILL, grace_s: float = 0.0) -> None:
        """`sig` to the agent's whole process group; SIGKILL after grace_s if it still runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.agent.pid, sig)
        try:
            self.agent.wait(grace_s if sig != signal.SIGKILL else 10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.agent.pid, signal.SIGKILL)
            self.agent.wait(10)

    def claimed(self) -> int:
        """Readings the agent said it accepted (its DEBUG line per commit), over all its runs."""
        total, run = 0, 0
        for line in (self.dir / "agent.log").read_text(errors="replace").splitlines():
            if line == AGENT_START_MARK:
                total, run = total + run, 0
            elif (m := _ACCEPTED_LINE.search(line)) is not None:
                run = int(m.group(1))
        return total + run

    def status(self) -> dict | None:
        """The running agent's own snapshot (`fleet-agent status --json`), or None."""
        from agent.control import query

        try:
            return query(str(self.socket))
        except (OSError, ValueError):
            return None

    async def _play_nmea(self, capture: Path) -> None:
        """The user's capture onto a pty at 9600 baud, once, as a receiver would send it."""
        master, slave = os.openpty()
        os.symlink(os.ttyname(slave), self.tty)
        data = capture.read_bytes()
        # a port flushes its input when opened: start once the agent holds it open
        await until(lambda: self.agent is not None and holds(self.agent.pid,
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
            return [(ms(f["time"]), f["lat"], f["lon"]) for f in fixes if "time" in f]
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
        path = self.journal_path
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
        stop_all(self.procs, grace_s=15)
        if self.emu:
            self.emu.close()


def as_json(report: Report) -> str:
    return json.dumps(asdict(report))
