"""A PostgreSQL primary with a synchronous standby, kept by Patroni + etcd (Debian's packages),
one network namespace per node, for the failover test and benchmark.

    bridge ── "dcs"  10.204.0.2   etcd (the DCS Patroni keeps its leader lock in)
           ── "pg1"  10.204.0.11  Patroni → PostgreSQL :5432, PgBouncer :6432
           ── "pg2"  10.204.0.12  Patroni → PostgreSQL :5432, PgBouncer :6432
           ── "app"  10.204.0.20  the backend (gateways, load tester) and the test's queries

Every node is a namespace of its own (tests/system/cluster/nslan.py), so the ports are fixed and
nothing is bound on the host; killing a node kills every process in its namespace (Patroni,
PostgreSQL, PgBouncer), as a lost host would: Patroni alone restarts a killed postmaster in
place, which is not a failover. Patroni runs in `synchronous_mode` (the primary's commit waits
for the standby; `synchronous_commit = remote_apply`, so a standby read sees every
acknowledged commit); not `synchronous_mode_strict`: without a standby the primary goes on
asynchronously rather than stalling the fleet (docs/operations.md). Timings are the test's
(`TTL_S`, `LOOP_WAIT_S`, `RETRY_TIMEOUT_S`), shorter than Patroni's defaults (30, 10, 10).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "system" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nslan import NsLan, in_netns  # noqa: E402
from pgbouncerfixture import PgBouncer  # noqa: E402
from pgfixture import CANDIDATE_USERS, PgUnavailable, _has_user, find_bindir  # noqa: E402

# The leader lock's time to live: a dead primary's lock expires after at most this, then the
# standby takes over. Patroni needs ttl >= loop_wait + 2 * retry_timeout.
TTL_S = 6
LOOP_WAIT_S = 1
RETRY_TIMEOUT_S = 2
PG_PORT = 5432
BOUNCER_PORT = 6432
REST_PORT = 8008
ETCD_PORT = 2379
READY_TIMEOUT_S = 120.0
HOSTS = {"dcs": 2, "pg1": 11, "pg2": 12, "app": 20}
USER = "fleet"
# PostgreSQL settings of every node (Patroni writes them into postgresql.conf).
PG_PARAMETERS = {
    "synchronous_commit": "remote_apply", "wal_level": "replica", "hot_standby": "on",
    "max_wal_senders": 5, "max_replication_slots": 5, "wal_keep_size": "128MB",
    "max_connections": 100, "shared_buffers": "64MB", "jit": "off",
    "fsync": "on", "full_page_writes": "on",
}


class HaUnavailable(RuntimeError):
    pass


def _runas() -> list[str]:
    if os.geteuid() != 0:
        raise HaUnavailable("the failover cluster needs root (network namespaces)")
    account = next((u for u in CANDIDATE_USERS if _has_user(u)), None)
    if account is None:
        raise PgUnavailable(f"no unprivileged account to run PostgreSQL as ({CANDIDATE_USERS})")
    pw = pwd.getpwnam(account)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]


class HaCluster:
    def __init__(self, nodes: tuple[str, ...] = ("pg1", "pg2"), tag: str | None = None,
                 bouncers: bool = True):
        for tool in ("patroni", "etcd"):
            if shutil.which(tool) is None:
                raise HaUnavailable(f"{tool} is not installed (`make deps-test`: APT_TEST)")
        self.nodes = nodes
        self.bindir = find_bindir()
        self.lan = NsLan(tag or f"h{os.getpid() % 100000}")
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-ha-"))
        self.runas = _runas()
        uid, gid = (int(a.split("=")[1]) for a in self.runas[1:3])
        os.chown(self.dir, uid, gid)
        self.procs: dict[str, list[subprocess.Popen]] = {}
        self.bouncers: dict[str, PgBouncer] = {}
        self.with_bouncers = bouncers
        self.killed: set[str] = set()

    # --- addresses ------------------------------------------------------------------------

    def ip(self, member: str) -> str:
        return self.lan.addr(member)

    def url(self, dbname: str, pooled: bool = False, attrs: str = "read-write") -> str:
        """The backend's multi-host URL: every node, the first writable one wins."""
        port = BOUNCER_PORT if pooled else PG_PORT
        hosts = ",".join(f"{self.ip(n)}:{port}" for n in self.nodes)
        tail = "&pool_mode=transaction" if pooled else ""
        return f"postgresql://{USER}@{hosts}/{dbname}?target_session_attrs={attrs}{tail}"

    def node_url(self, node: str, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@{self.ip(node)}:{PG_PORT}/{dbname}"

    def exec_args(self, member: str) -> list[str]:
        return self.lan.exec_args(member)

    def in_app(self, fn, *args):
        """fn(*args) on a thread inside the "app" namespace (where the backend runs)."""
        return in_netns(self.lan.ns("app"), fn, *args)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> HaCluster:
        try:
            self.lan.build({m: [HOSTS[m]] for m in ("dcs", *self.nodes, "app")})
            self._start_etcd()
            self._start_node(self.nodes[0])
            self.wait_for(lambda c: self._role(c, self.nodes[0]) == "leader", "a leader")
            for n in self.nodes[1:]:
                self._start_node(n)
            # (Patroni 3.0 says "running" for a replica; later versions "streaming")
            self.wait_for(lambda c: all(self._state(c, n) in ("running", "streaming")
                                        for n in self.nodes[1:]) and
                          any(m.get("role") == "sync_standby" for m in c["members"]),
                          "a synchronous standby")
            if self.with_bouncers:
                for n in self.nodes:
                    self.bouncers[n] = PgBouncer(
                        self.ip(n), PG_PORT, user=USER, listen=(self.ip(n), BOUNCER_PORT),
                        exec_prefix=self.exec_args(n), workdir=self.dir).start()
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, member: str, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.dir / log, "ab")
        proc = subprocess.Popen([*self.exec_args(member), *args], stdout=out, stderr=out,
                                start_new_session=True)
        self.procs.setdefault(member, []).append(proc)
        return proc

    def _start_etcd(self) -> None:
        ip = self.ip("dcs")
        data = self.dir / "etcd"
        self._spawn("dcs", [
            "etcd", "--name", "dcs", "--data-dir", str(data),
            "--listen-client-urls", f"http://{ip}:{ETCD_PORT}",
            "--advertise-client-urls", f"http://{ip}:{ETCD_PORT}",
            "--listen-peer-urls", f"http://{ip}:{ETCD_PORT + 1}",
            "--initial-advertise-peer-urls", f"http://{ip}:{ETCD_PORT + 1}",
            "--initial-cluster", f"dcs=http://{ip}:{ETCD_PORT + 1}",
            "--log-level", "warn"], "etcd.log")

    def rejoin(self, node: str) -> None:
        """Bring a killed node back as a new standby (its old data removed: Patroni clones the
        current primary), with its PgBouncer; returns once it is the synchronous standby."""
        self.procs.pop(node, None)
        shutil.rmtree(self.dir / node, ignore_errors=True)
        self._start_node(node)
        self.killed.discard(node)
        self.wait_for(lambda c: self._role(c, node) == "sync_standby", f"{node} back")
        if node in self.bouncers:
            old = self.bouncers.pop(node)
            shutil.rmtree(old.dir, ignore_errors=True)
            self.bouncers[node] = PgBouncer(
                self.ip(node), PG_PORT, user=USER, listen=(self.ip(node), BOUNCER_PORT),
                exec_prefix=self.exec_args(node), workdir=self.dir).start()

    def ensure_pair(self) -> None:
        """A primary and a synchronous standby again, whatever a test before killed."""
        for node in sorted(self.killed):
            self.rejoin(node)

    def standby(self) -> str | None:
        c = self.cluster()
        return next((m["name"] for m in c["members"] if m["role"] == "sync_standby"), None)

    def _start_node(self, node: str) -> None:
        home = self.dir / node
        home.mkdir()
        ip = self.ip(node)
        config = {
            "scope": "fleet", "namespace": "/fleet/", "name": node,
            "log": {"level": "WARNING"},
            "restapi": {"listen": f"{ip}:{REST_PORT}", "connect_address": f"{ip}:{REST_PORT}"},
            "etcd3": {"hosts": [f"{self.ip('dcs')}:{ETCD_PORT}"]},
            "bootstrap": {
                "dcs": {"ttl": TTL_S, "loop_wait": LOOP_WAIT_S,
                        "retry_timeout": RETRY_TIMEOUT_S,
                        "maximum_lag_on_failover": 16 * 1024 * 1024,
                        "synchronous_mode": True, "synchronous_mode_strict": False,
                        "postgresql": {"use_pg_rewind": False, "use_slots": True,
                                       "parameters": PG_PARAMETERS}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "no-sync"],
            },
            "postgresql": {
                "listen": f"{ip},127.0.0.1:{PG_PORT}", "connect_address": f"{ip}:{PG_PORT}",
                "data_dir": str(home / "data"), "bin_dir": str(self.bindir),
                "pgpass": str(home / "pgpass"),
                # a new standby's base backup asks for an immediate checkpoint: the default,
                # spread one made a rejoin after the load test wait a minute
                "basebackup": [{"checkpoint": "fast"}],
                "authentication": {"superuser": {"username": USER},
                                   "replication": {"username": USER}},
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host all all 10.204.0.0/24 trust",
                           "host replication all 10.204.0.0/24 trust"],
                "parameters": {"unix_socket_directories": str(home)},
            },
        }
        path = home / "patroni.yml"
        path.write_text(json.dumps(config))  # YAML is a superset of JSON
        uid, gid = (int(a.split("=")[1]) for a in self.runas[1:3])
        for p in (home, path):
            os.chown(p, uid, gid)
        home.chmod(0o700)
        self._spawn(node, [*self.runas, "patroni", str(path)], f"{node}.log")

    # --- state ----------------------------------------------------------------------------

    def cluster(self) -> dict:
        """Patroni's view (GET /cluster) from any node still answering."""
        def get():
            last = None
            for n in self.nodes:
                if n in self.killed:
                    continue
                try:
                    with urllib.request.urlopen(f"http://{self.ip(n)}:{REST_PORT}/cluster",
                                                timeout=2) as r:
                        return json.load(r)
                except OSError as exc:
                    last = exc
            raise HaUnavailable(f"no Patroni answers: {last}")
        return self.in_app(get)

    @staticmethod
    def _member(c: dict, node: str) -> dict:
        return next((m for m in c.get("members", []) if m["name"] == node), {})

    def _role(self, c: dict, node: str) -> str | None:
        return self._member(c, node).get("role")

    def _state(self, c: dict, node: str) -> str | None:
        return self._member(c, node).get("state")

    def primary(self) -> str | None:
        c = self.cluster()
        return next((m["name"] for m in c["members"] if m["role"] == "leader"
                     and m.get("state") == "running"), None)

    def wait_for(self, ok, what: str, timeout: float = READY_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            for member, procs in self.procs.items():
                for p in procs:
                    if p.poll() is not None and member not in self.killed:
                        raise HaUnavailable(f"{member} exited ({p.returncode}): "
                                            f"{self._tail(member)}")
            try:
                last = self.cluster()
                if ok(last):
                    return last
            except HaUnavailable as exc:
                last = exc
            time.sleep(0.2)
        raise HaUnavailable(f"no {what} within {timeout:.0f} s: {last}")

    def _tail(self, member: str) -> str:
        log = self.dir / f"{'etcd' if member == 'dcs' else member}.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def psql(self, node: str, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run([*self.exec_args(node), *self.runas, str(self.bindir / "psql"),
                              "-X", "-q", "-At", "-h", str(self.dir / node), "-p", str(PG_PORT),
                              "-U", USER, "-d", dbname, "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise HaUnavailable(f"psql on {node}: {out.stderr.strip()}")
        return out.stdout.strip()

    # --- faults ---------------------------------------------------------------------------

    def kill_node(self, node: str) -> None:
        """SIGKILL every process in the node's namespace (Patroni, PostgreSQL, PgBouncer)."""
        self.killed.add(node)
        for _ in range(5):  # a process forked meanwhile is found on the next round
            out = subprocess.run(["ip", "netns", "pids", self.lan.ns(node)],
                                 capture_output=True, text=True, timeout=10)
            pids = [int(p) for p in out.stdout.split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for p in self.procs.get(node, []):
            p.wait(10)
        if node in self.bouncers:
            self.bouncers[node].proc.wait(10)

    def close(self) -> None:
        for b in self.bouncers.values():
            b.close()
        for member in list(self.procs):
            if member != "dcs" and member not in self.killed:
                try:
                    self.kill_node(member)
                except (OSError, subprocess.SubprocessError):
                    pass
        for p in self.procs.pop("dcs", []):
            p.kill()
            p.wait(10)
        self.lan.teardown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HaCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
