"""A real, throw-away PostgreSQL + PostGIS server for tests and benchmarks.

`PgServer` runs initdb and pg_ctl in a temporary directory on a random port (TCP on 127.0.0.1
plus a unix socket in the same directory). As root it runs the server as an unprivileged user,
because initdb refuses to run as root. Binaries come from $FLEET_PG_BINDIR, else
`pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin (Debian's layout).

`PgServer(timescale=True)` preloads TimescaleDB (`shared_preload_libraries`), so the first
migration makes `vehicle_telemetry` a hypertable; `serve(flavour)` starts either kind, and a
conftest parametrises `pg_server` over `FLAVOURS` to run the store tests on both.

Import it from a conftest (`from pgfixture import PgServer`, with tests/ on sys.path) or from
a script; `tests/integration/postgres/conftest.py` turns it into pytest fixtures.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# An unprivileged account to own the data directory when we run as root.
CANDIDATE_USERS = ("postgres", "nobody")
START_TIMEOUT_S = 60
# "native": daily range partitions; "timescale": the same schema as a TimescaleDB hypertable.
FLAVOURS = ("native", "timescale")
# Preload TimescaleDB. Its telemetry would phone home (tests talk to loopback only), and its
# per-database job schedulers hold connections that make CREATE DATABASE … TEMPLATE fail; the
# Apache build has no policies for them to run anyway.
TIMESCALE_SETTINGS = {"shared_preload_libraries": "timescaledb",
                      "timescaledb.telemetry_level": "off",
                      "timescaledb.max_background_workers": "0"}
TIMESCALE_MISSING = (
    "TimescaleDB is not installed for {pg}: `make test` builds it from ../shared/vendor/ when "
    "that is there; otherwise install it from Timescale's packages "
    "(https://docs.timescale.com/self-hosted/latest/install/installation-linux/, package "
    "timescaledb-2-postgresql-15) and rerun")


class PgUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    env = os.environ.get("FLEET_PG_BINDIR")
    candidates = [Path(env)] if env else []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                    else 0, reverse=True)
    candidates += [Path(p) for p in debian]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise PgUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql-15 and "
        "postgresql-15-postgis-3 (`make deps-test`), or set FLEET_PG_BINDIR")


def timescale_installed(bindir: Path) -> bool:
    """True if the server in `bindir` has the timescaledb extension files."""
    out = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True,
                         text=True)
    return out.returncode == 0 and (Path(out.stdout.strip()) / "extension" /
                                    "timescaledb.control").exists()


# PostgreSQL cannot listen on port 0, so a port is picked first; if another program binds it
# before the postmaster does, the start is retried (a first start on a new port, a restart on
# the same one: clients know it) for this long.
PORT_RETRY_S = 15.0
ADDRESS_IN_USE = "Address already in use"


def free_port() -> int:
    """A port free *now* (see PORT_RETRY_S for when someone takes it before the server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, settings: dict[str, str] | None = None, keep: bool = False,
                 timescale: bool = False, host: str = "127.0.0.1",
                 directory: Path | None = None, port: int | None = None):
        """A new server in a new temporary directory, or (`directory`, `port`) the server of
        another process of the same test run (`attach`)."""
        self.host = host  # listen address (a network namespace's in tests/system/cluster)
        self.bindir = find_bindir()
        self.timescale = timescale
        if timescale and not timescale_installed(self.bindir):
            raise PgUnavailable(TIMESCALE_MISSING.format(pg=self.bindir))
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                         "max_connections": "50", "shared_buffers": "128MB"}
        if timescale:
            self.settings.update(TIMESCALE_SETTINGS)
        self.settings.update(settings or {})
        self.keep = keep
        self.port = port or free_port()
        self.dir = directory or Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.user = "fleet"
        self._runas: list[str] = []
        if os.geteuid() == 0:
            account = next((u for u in CANDIDATE_USERS if _has_user(u)), None)
            if account is None:
                raise PgUnavailable("running as root and no unprivileged account to run "
                                    f"PostgreSQL as (tried {CANDIDATE_USERS})")
            pw = pwd.getpwnam(account)
            if directory is None:
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._runas = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                           "--clear-groups", "--"]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = self._runas + [str(self.bindir / args[0]), *args[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir,
                             timeout=START_TIMEOUT_S)
        if check and out.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise PgUnavailable(f"{' '.join(args[:2])} failed: {out.stderr.strip()}\n{log}")
        return out

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def start(self) -> PgServer:
        """Start the server (initdb first if new). pg_ctl -w waits for *this* postmaster, so
        readiness cannot be another program's listener; a port taken in between is retried."""
        first = not self.data.exists()
        if first:
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
        deadline = time.monotonic() + PORT_RETRY_S
        while True:
            log_size = self.log.stat().st_size if self.log.exists() else 0
            opts = " ".join([f"-p {self.port}", f"-c listen_addresses={self.host}",
                             f"-k {self.dir}"] +
                            [f"-c {k}={v}" for k, v in self.settings.items()])
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                          "-t", str(START_TIMEOUT_S), "start")
                return self
            except PgUnavailable:
                with open(self.log, "rb") as f:
                    f.seek(log_size)
                    taken = ADDRESS_IN_USE.encode() in f.read()
                if not taken or time.monotonic() >= deadline:
                    raise
            if first:
                self.port = free_port()
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill9(self) -> None:
        """Crash the postmaster (recovery happens on the next start)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = self._run("psql", "-X", "-q", "-At", "-h", str(self.dir), "-p", str(self.port),
                        "-U", self.user, "-d", dbname, "-v", "ON_ERROR_STOP=1", "-c", sql)
        return out.stdout.strip()

    def create_database(self, name: str, template: str = "template0") -> str:
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def close(self) -> None:
        self.stop("immediate")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# --- one server per flavour for a whole test run, shared by pytest-xdist's workers -----------

# The run's directory (made by the first process of a run, tests/conftest.py; the workers inherit
# the variable): the shared servers' descriptions and locks live there.
RUN_DIR_ENV = "FLEET_TEST_RUN_DIR"
# a shared server serves every worker's tests and their pools at once
SHARED_SETTINGS = {"max_connections": "200"}
_shared: dict[str, tuple[PgServer, str]] = {}  # flavour -> (server, template), this process


def run_dir() -> Path:
    """This run's shared directory (a private one for a script outside pytest)."""
    path = os.environ.get(RUN_DIR_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="fleet-test-run-")
        os.environ[RUN_DIR_ENV] = path
    return Path(path)


def shared_server(flavour: str = "native") -> tuple[PgServer, str]:
    """The run's server of `flavour` and its migrated template database: the first process to
    ask starts it (under a file lock), the others attach to it. Tests get their own database
    (`fresh_database`), never a server of their own: one that stops or restarts its server
    makes its own PgServer. `stop_shared` (the run's first process, at its end) stops them."""
    if flavour in _shared:
        return _shared[flavour]
    directory = run_dir()
    info = directory / f"pg-{flavour}.json"
    with open(directory / f"pg-{flavour}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if info.exists():
            d = json.loads(info.read_text())
            server = PgServer(dict(SHARED_SETTINGS), timescale=d["timescale"],
                              directory=Path(d["dir"]), port=d["port"])
            template = d["template"]
        else:
            server = PgServer(dict(SHARED_SETTINGS), timescale=flavour == "timescale").start()
            try:
                template = make_template(server)
            except BaseException:
                server.close()
                raise
            info.write_text(json.dumps({"dir": str(server.dir), "port": server.port,
                                        "timescale": server.timescale,
                                        "template": template}))
    _shared[flavour] = (server, template)
    return server, template


def stop_shared() -> None:
    """Stop the run's shared servers (whichever process started them) and remove them."""
    path = os.environ.get(RUN_DIR_ENV)
    for info in Path(path).glob("pg-*.json") if path else ():
        d = json.loads(info.read_text())
        PgServer(timescale=d["timescale"], directory=Path(d["dir"]), port=d["port"]).close()
        info.unlink()
    _shared.clear()


TEMPLATE = "fleet_template"


def make_template(server: PgServer) -> str:
    """A database with PostGIS and every migration applied, to clone per test (made once per
    server: a shared server already has it)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from backend.store.postgres import PostgresStore

    if server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE}'"):
        return TEMPLATE
    url = server.create_database(TEMPLATE)

    async def migrate():
        # no partition job: its first round would race close() and, when it won, leave the
        # template with today's partitions made ahead, which every clone would then hold
        store = PostgresStore(url, maintain_every_s=0)
        await store.open()
        # ten years of retention: the store writes only within the retention (its partition
        # window), and the tests' fixed dates (2025) must not age out of it; tests of the
        # retention set their own
        await store.set_policy(retention_days=3650)
        await store.close()

    # in a thread of its own: this may be requested from inside a running event loop
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate()).result()
    return TEMPLATE


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --- pytest fixtures (import these names into a conftest) -------------------------------------

try:
    import pytest
except ImportError:  # used from a plain script
    pytest = None

if pytest is not None:
    def serve(flavour: str = "native"):
        """Generator body of a `pg_server` fixture: the run's shared server of `flavour`; a
        missing PostgreSQL (or TimescaleDB) is a failure, not a skip."""
        try:
            server, _ = shared_server(flavour)
        except PgUnavailable as exc:
            pytest.fail(f"PostgreSQL test server ({flavour}) unavailable: {exc}", pytrace=False)
        yield server

    def serve_own(flavour: str = "native"):
        """Generator body of a fixture for a test that stops or restarts its server: a server
        of its own, started here and removed after."""
        try:
            server = PgServer(timescale=flavour == "timescale").start()
        except PgUnavailable as exc:
            pytest.fail(f"PostgreSQL test server ({flavour}) unavailable: {exc}", pytrace=False)
        try:
            yield server
        finally:
            server.close()

    @pytest.fixture(scope="session")
    def pg_server():
        """The run's native-partitioning server."""
        yield from serve("native")

    def template_of(server: PgServer) -> str:
        """The migrated template database of `server` (made once per server)."""
        return make_template(server)

    _counter = iter(range(1, 1_000_000))

    def fresh_database(server: PgServer, template: str):
        """Generator body of a per-test database fixture: a clone of `template`, dropped after."""
        name = f"t{os.getpid()}_{next(_counter)}"
        url = server.create_database(name, template=template)
        yield url
        server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @pytest.fixture(scope="session")
    def pg_template(pg_server):
        return template_of(pg_server)

    @pytest.fixture
    def pg_url(pg_server, pg_template):
        """A fresh migrated database for one test."""
        yield from fresh_database(pg_server, pg_template)

    @pytest.fixture(scope="session")
    def ts_server():
        """The run's TimescaleDB server (for fixtures that pick the flavour at run time)."""
        yield from serve("timescale")

    @pytest.fixture(scope="session")
    def ts_template(ts_server):
        return template_of(ts_server)

    @pytest.fixture
    def ts_url(ts_server, ts_template):
        """A fresh migrated database (vehicle_telemetry a hypertable) for one test."""
        yield from fresh_database(ts_server, ts_template)

    # The store kinds an `any_store` fixture runs a test on (its `params`).
    STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
    STORE_KINDS_WITH_TIMESCALE = [*STORE_KINDS,
                                  pytest.param("timescale", marks=pytest.mark.postgres)]
    # the per-test database fixture of each PostgreSQL kind, as a conftest imports it
    _DATABASE_FIXTURE = {"postgres": "_pg_url", "timescale": "_ts_url"}

    async def opened_store(request, tmp_path):
        """Async generator body of an `any_store` fixture parametrised over STORE_KINDS: an
        open store of the kind `request.param` names (SQLite in `tmp_path`, or a fresh migrated
        PostgreSQL database from the conftest's `_pg_url`/`_ts_url`), closed after."""
        from backend.store import open_store

        fixture = _DATABASE_FIXTURE.get(request.param)
        url = (request.getfixturevalue(fixture) if fixture
               else f"sqlite://{tmp_path / 'fleet.db'}")
        store = open_store(url)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
