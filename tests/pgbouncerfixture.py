"""A real PgBouncer (Debian's package) in transaction pooling mode in front of a test server.

`PgBouncer(server_host, server_port).start()` writes a pgbouncer.ini for every database of
that server (`* = host=… port=…`) with the lines docs/operations.md gives an operator, and runs
pgbouncer in the foreground as the unprivileged account tests/pgfixture.py uses (pgbouncer
refuses to run as root). By default it listens only on a unix socket in its own temporary
directory, so no TCP port is picked and bound later; `listen=(address, port)` instead listens
on TCP (a network namespace's own address in the failover test). `url(db)` is the backend's
URL through it, with `pool_mode=transaction` (backend/store/postgres.py `pooled_url`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from pgfixture import CANDIDATE_USERS, PgUnavailable, _has_user

READY_TIMEOUT_S = 20.0
# The port number names the unix socket file (.s.PGSQL.6432); PgBouncer's default.
SOCKET_PORT = 6432
# Enough client connections for the load tester's gateways and the tests' own checks.
MAX_CLIENT_CONN = 500
# Server connections per (database, user): the backend keeps at most 5 per process.
DEFAULT_POOL_SIZE = 20

INI = """\
[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = {listen_addr}
listen_port = {listen_port}
unix_socket_dir = {socket_dir}
auth_type = trust
auth_file = {dir}/userlist.txt
admin_users = {user}
pool_mode = transaction
max_client_conn = {max_client_conn}
default_pool_size = {pool_size}
server_reset_query =
logfile = {dir}/pgbouncer.log
"""


class PgBouncer:
    def __init__(self, server_host: str, server_port: int, user: str = "fleet",
                 listen: tuple[str, int] | None = None, exec_prefix: list[str] = (),
                 workdir: Path | None = None, pool_size: int = DEFAULT_POOL_SIZE):
        self.binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(self.binary).exists():
            raise PgUnavailable("pgbouncer is not installed (`make deps-test`: APT_TEST)")
        self.server = (server_host, server_port)
        self.user = user
        self.pool_size = pool_size
        self.listen = listen
        self.exec_prefix = list(exec_prefix)  # e.g. `ip netns exec NS`
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-pgb-", dir=workdir))
        self.proc: subprocess.Popen | None = None
        self._runas: list[str] = []
        if os.geteuid() == 0:
            account = next((u for u in CANDIDATE_USERS if _has_user(u)), None)
            if account is None:
                raise PgUnavailable(f"running as root and no account to run pgbouncer as "
                                    f"(tried {CANDIDATE_USERS})")
            pw = pwd.getpwnam(account)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._runas = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                           "--clear-groups", "--"]

    @property
    def port(self) -> int:
        return self.listen[1] if self.listen else SOCKET_PORT

    def url(self, dbname: str) -> str:
        """The backend's URL for `dbname` through this PgBouncer."""
        if self.listen:
            return (f"postgresql://{self.user}@{self.listen[0]}:{self.listen[1]}/{dbname}"
                    "?pool_mode=transaction")
        return (f"postgresql://{self.user}@/{dbname}?host={self.dir}&port={SOCKET_PORT}"
                "&pool_mode=transaction")

    def start(self) -> PgBouncer:
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(INI.format(
            server_host=self.server[0], server_port=self.server[1],
            listen_addr=self.listen[0] if self.listen else "",
            listen_port=self.port, socket_dir=self.dir, dir=self.dir, user=self.user,
            max_client_conn=MAX_CLIENT_CONN, pool_size=self.pool_size))
        for f in ("userlist.txt", "pgbouncer.ini"):
            shutil.chown(self.dir / f, *self._owner())
        self.proc = subprocess.Popen([*self.exec_prefix, *self._runas, self.binary, str(ini)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._accepts():
                return self
            time.sleep(0.05)
        log = (self.dir / "pgbouncer.log").read_text()[-2000:] if (
            self.dir / "pgbouncer.log").exists() else ""
        self.close()
        raise PgUnavailable(f"pgbouncer did not start: {log}")

    def _owner(self) -> tuple[int, int]:
        st = self.dir.stat()
        return st.st_uid, st.st_gid

    def _accepts(self) -> bool:
        if self.listen:  # in another namespace: its log says when it listens
            log = self.dir / "pgbouncer.log"
            return log.exists() and "process up" in log.read_text()
        path = self.dir / f".s.PGSQL.{SOCKET_PORT}"
        if not path.exists():
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return True
            except OSError:
                return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
