"""Shared fixtures: certificates, free ports, and real backend / agent / GPS simulator processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.pki import generate
from backend.store import open_store

REPO = Path(__file__).resolve().parents[1]
# "backend ready: dashboard http://localhost:8080/ gateway udp 127.0.0.1:4433"
READY_PORTS = re.compile(r"://[^/]*:(?P<http>\d+)/ gateway udp .*:(?P<quic>\d+)")

# --- the run: pytest-xdist's workers and the groups kept serial -------------------------------

# Tests that share something a second worker must not touch at the same time run as one group:
# on one worker, one test at a time (the scheduler below). They are also the longest, so the
# groups go first (in this order) and the short tests fill the other worker around them.
# Keyed by file, relative to the repository.
SERIAL_GROUPS = {
    # the VM image cache (hil/vm.py) and the .deb the VM tests install (built once per worker)
    "vm": ("tests/system/test_deb_vm.py", "tests/system/test_packaging.py",
           "tests/system/journal/test_powercut_vm.py", "tests/system/can/test_can_vcan.py"),
    # the arm64 chroot (hil/chroot.py), which builds in its cached root
    "chroot": ("tests/system/test_deb_arm64.py",),
    # network namespaces and routes, and timing that a second busy worker would disturb
    "netns": ("tests/integration/net/test_netns.py", "tests/integration/net/test_migration.py",
              "tests/system/test_hil_scenarios.py", "tests/system/cluster/test_netns_cluster.py",
              "tests/system/cluster/test_nats_cluster.py",
              "tests/system/cluster/test_pg_failover.py"),
    # SO_REUSEPORT groups on 127.0.0.1: a port-0 bind may join another socket's group of the
    # same user (the kernel's ephemeral search skips such ports only for plain sockets)
    "reuseport": ("tests/system/cluster/test_reuseport.py",
                  "tests/system/cluster/test_reuseport_workers.py",
                  "tests/system/cluster/test_alert_owners.py",
                  "tests/system/cluster/test_loadtest_router.py"),
}
_GROUP_OF = {path: name for name, paths in SERIAL_GROUPS.items() for path in paths}


def serial_group(nodeid: str) -> str | None:
    """The serial group of a test id (`path::name[params]`), None for the others."""
    return _GROUP_OF.get(nodeid.split("::", 1)[0])


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduling by scope, a scope being a serial group or else one test.
    (xdist's own `--dist loadgroup` groups by marking node ids, which pytest 9.2's node ids
    no longer take: measured here, its groups ran on both workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SerialGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return serial_group(nodeid) or nodeid

    return SerialGroups(config, log)


def pytest_configure(config):
    """The run's shared directory (tests/pgfixture.py: one PostgreSQL server per flavour for
    the whole run): made by the first process, inherited by xdist's workers."""
    if not hasattr(config, "workerinput"):
        import tempfile

        from . import pgfixture

        os.environ[pgfixture.RUN_DIR_ENV] = tempfile.mkdtemp(prefix="fleet-test-run-")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        from . import pgfixture

        pgfixture.stop_shared()
        shutil.rmtree(os.environ.pop(pgfixture.RUN_DIR_ENV, ""), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The serial groups first, in SERIAL_GROUPS' order (a stable sort: the rest keep theirs);
    with `--no-loadscope-reorder` the scheduler keeps this order."""
    rank = {name: i for i, name in enumerate(SERIAL_GROUPS)}
    items.sort(key=lambda item: rank.get(serial_group(item.nodeid), len(rank)))


# How long a (re)start keeps retrying a port someone else holds for a moment (an ephemeral
# client socket of another program): long against a loaded machine, bounded.
PORT_RETRY_S = 60.0
# what a server process logs when its port is taken
ADDRESS_IN_USE = "Address already in use"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free *now*: only for a server that must be configured before it starts (another
    program may bind it in between; its start then retries, see `Processes.backend`). Prefer
    port 0 and reading the bound port back."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass(frozen=True)
class Debs:
    """The two packages of one build."""

    agent: Path
    backend: Path

    @classmethod
    def found_in(cls, folder: Path) -> Debs:
        [agent] = folder.glob("fleet-agent_*.deb")
        [backend] = folder.glob("fleet-backend_*.deb")
        return cls(agent, backend)


@pytest.fixture(scope="session")
def deb_package(tmp_path_factory) -> Debs:
    """The fleet-agent and fleet-backend .debs, built once per session (dpkg-buildpackage -b,
    1-3 minutes) from a copy of the files git tracks; tests/system/test_packaging.py and
    tests/system/test_deb_vm.py share them.
    `FLEET_DEB=dir` uses .debs built beforehand in dir instead (a loaded machine can take
    longer than a test's timeout to build them)."""
    if os.environ.get("FLEET_DEB"):
        return Debs.found_in(Path(os.environ["FLEET_DEB"]).resolve())
    assert shutil.which("dpkg-buildpackage"), "dpkg-buildpackage missing: `make test` installs it"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    out = tmp_path_factory.mktemp("deb")
    src = out / "src"
    for f in filter(None, files):
        rel = f.decode()
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / rel).is_symlink():
            dest.symlink_to((REPO / rel).readlink())
        else:
            shutil.copy2(REPO / rel, dest)
    # zstd, not dpkg-deb's default xz, for the suite's copies only: xz took ~60 s of a core
    # per package here and several times that to unpack in the emulated VM; zstd -3 packs the
    # backend in 3 s (71 against 52 MB), and Debian 12's dpkg reads it. Release builds keep xz.
    env = dict(os.environ, DPKG_DEB_COMPRESSOR_TYPE="zstd", DPKG_DEB_COMPRESSOR_LEVEL="3")
    build = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return Debs.found_in(out)


@pytest.fixture(params=["aioquic", "qh3"])
def quic_library(request, monkeypatch) -> str:
    """The test runs once per QUIC library of the seam (geostream/quic/): the gateways, agents
    and backend processes it starts use it (FLEET_QUIC_LIBRARY). Ask for it before `gw`."""
    gap = request.node.get_closest_marker("qh3_gap")
    if gap is not None and request.param == "qh3":  # strict: passing tells us to adopt it
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"qh3: {gap.args[0]}"))
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", request.param)
    return request.param


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, str]:
    return generate(str(tmp_path_factory.mktemp("pki")), ["localhost", "127.0.0.1", "::1"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.alive():
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
            raise AssertionError(
                f"{self.popen.args[:4]} ignored signal {sig}; see {self.log}") from None

    def kill9(self) -> None:
        self.popen.kill()
        self.popen.wait(5)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Processes:
    """Starts the project's programs as real processes; stops whatever is left at teardown."""

    def __init__(self, tmp: Path, pki: dict[str, str]):
        self.tmp = tmp
        self.pki = pki
        self.procs: list[Proc] = []
        self.db_path = tmp / "fleet.db"
        self.ticket_file = tmp / "gateway-tickets.sqlite"
        # 0 until the backend's first start reports the ports the kernel gave it; a restart
        # keeps them (the agents know them)
        self._quic_port = 0
        self.http_port = 0
        self.tokens: dict[str, str] = {}
        self.token = ""  # an API token for HTTP calls, when a test makes one (api_token)

    def _spawn(self, args: list[str], name: str, stdout=None) -> Proc:
        log = self.tmp / f"{name}.log"
        f = open(log, "ab")
        popen = subprocess.Popen([sys.executable, *args], stdout=stdout or f, stderr=f,
                                 env=_env(), cwd=REPO)
        proc = Proc(popen, log)
        self.procs.append(proc)
        return proc

    def provision(self, *vehicles: str) -> None:
        async def add():
            store = open_store(f"sqlite://{self.db_path}")
            await store.open()
            try:
                for v in vehicles:
                    self.tokens[v] = await store.add_vehicle(v)
            finally:
                await store.close()

        asyncio.run(add())

    def api_token(self, role: str = "admin", db: str | None = None) -> str:
        """An API token of a user with `role` in the backend's store (tests/authhelp.py)."""
        from .authhelp import api_token

        return api_token(db or f"sqlite://{self.db_path}", f"test-{role}", role)

    @property
    def quic_port(self) -> int:
        """The gateway's UDP port. Asked before the backend's first start (an agent configured
        first), it is picked now, and the backend's start retries it while it is taken."""
        if not self._quic_port:
            self._quic_port = free_port(socket.SOCK_DGRAM)
        return self._quic_port

    def backend(self, *extra: str) -> Proc:
        """Start the backend; returns once it printed its ready line. Its first start binds
        port 0 (the kernel's choice, read back from that line); a restart binds the same ports,
        and retries for `PORT_RETRY_S` while another program holds one of them."""
        deadline = time.monotonic() + PORT_RETRY_S
        while True:
            proc = self._spawn(
                ["-m", "backend", "--db", f"sqlite://{self.db_path}", "--cert",
                 self.pki["cert"], "--key", self.pki["key"], "--quic-host", "127.0.0.1",
                 "--quic-port", str(self._quic_port), "--http-port", str(self.http_port),
                 "--ticket-file", str(self.ticket_file), *extra],
                "backend", stdout=subprocess.PIPE)
            line = proc.popen.stdout.readline().decode()
            if "backend ready" in line:
                break
            proc.popen.wait(15)
            if ADDRESS_IN_USE not in proc.text() or time.monotonic() >= deadline:
                raise AssertionError(f"backend failed to start: {line!r}\n{proc.text()}")
            time.sleep(0.2)
        ports = READY_PORTS.search(line)
        assert ports, f"no ports in the ready line {line!r}"
        self.http_port, self._quic_port = int(ports["http"]), int(ports["quic"])
        return proc

    def gps_sim(self, vehicle: str, rate: float = 10.0, count: int = 0,
                garbage_every: int = 0, route: str = "harbour") -> Proc:
        args = ["-m", "hil.gps_sim", "--link", str(self.tty(vehicle)), "--rate", str(rate),
                "--record", str(self.record(vehicle)), "--route", route, "--wait-reader"]
        if count:
            args += ["--count", str(count)]
        if garbage_every:
            args += ["--garbage-every", str(garbage_every)]
        proc = self._spawn(args, f"{vehicle}.sim")
        wait_for(lambda: self.tty(vehicle).exists(), 10, "simulator pty")
        return proc

    def tty(self, vehicle: str) -> Path:
        return self.tmp / f"{vehicle}.tty"

    def record(self, vehicle: str) -> Path:
        return self.tmp / f"{vehicle}.sent.jsonl"

    def journal(self, vehicle: str) -> Path:
        return self.tmp / f"{vehicle}.journal.sqlite"

    def agent_config(self, vehicle: str, token: str | None = None, extra: str = "") -> Path:
        path = self.tmp / f"{vehicle}.toml"
        path.write_text(
            f'[vehicle]\nid = "{vehicle}"\ntoken = "{token or self.tokens[vehicle]}"\n\n'
            f'[server]\nhost = "127.0.0.1"\nport = {self.quic_port}\n'
            f'ca_file = "{self.pki["ca"]}"\nserver_name = "localhost"\n\n'
            f'[journal]\npath = "{self.journal(vehicle)}"\ncommit_interval_ms = 100\n\n'
            f'[gps]\ndevice = "{self.tty(vehicle)}"\nbaud = 9600\n{extra}')
        return path

    def agent(self, vehicle: str, extra_config: str = "") -> Proc:
        config = self.agent_config(vehicle, extra=extra_config)
        return self._spawn(["-m", "agent", "--config", str(config)], f"{vehicle}.agent")

    def sent(self, vehicle: str) -> list[dict]:
        path = self.record(vehicle)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stored(self, vehicle: str) -> list[tuple]:
        """(epoch, seq, time_ms, lat, lon, speed_kmh, course_deg, alt_m) rows of kind pos."""
        if not self.db_path.exists():
            return []
        with sqlite3.connect(self.db_path, timeout=10) as db:
            return db.execute(
                "SELECT epoch, seq, time_ms, lat, lon, speed_kmh, course_deg, alt_m "
                "FROM vehicle_telemetry WHERE vehicle_id=? AND kind='pos' ORDER BY seq",
                (vehicle,)).fetchall()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.alive():
                proc.popen.kill()
                proc.popen.wait(5)


@pytest.fixture
def procs(tmp_path, pki):
    p = Processes(tmp_path, pki)
    yield p
    p.stop_all()
