"""The Raspberry Pi package: the .deb built for arm64 and smoke-tested in an arm64 Debian 12
chroot under qemu-user-static (hil/chroot.py), the way `apt install fleet-agent` runs on a Pi 4/5.

In the chroot: `apt-get install` of the package (it has no init, so services are not started),
`fleet-agent --version` from the aarch64 virtualenv, `nmea-decode` and `can-decode` on the
sample captures (their output must equal the host's, amd64), and the agent journaling fixes from
a pty GPS (the test rig's hil.gps_sim, copied in) with its gateway unreachable: every fix the
simulator sent is in the journal exactly once. Then `apt-get purge`.

The same root and .deb then get the package from a signed apt repository (hil/aptrepo.py)
served on loopback: `apt install`, readings waiting in the journal, a Release signed by another
key and a changed byte in the pool refused, `apt upgrade` keeping the journal, and every
waiting reading delivered once to a real backend (docs/operations.md, "A signed apt
repository"). About 3.5 minutes warm with the machine loaded (load average ~10).

Cost, measured on the shared 2-core machine (load average ~10, docs/benchmarks.md "arm64
package"): warm (root and wheels cached under /var/tmp/fleet-agent-chroot/) 392 s, the build
~5.5 min of it; cold about 25 min: the minbase debootstrap 957 s, the host's download of the
aarch64 wheels ~2.5 min, then the warm run. Nothing compiles and no Node.js runs under
emulation (hil/chroot.py). Needs root, debootstrap, qemu-user-static (`make deps-test`) and
the network for a cold cache: without them it fails, it never skips.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.pki import generate
from hil import aptrepo, chroot
from tests.conftest import REPO, _env
from tests.system.debcheck import agent_package_problems

pytestmark = pytest.mark.slow
ARCH = "arm64"
FIXES = 15
VENV = "/opt/venvs/fleet-agent/bin"
NMEA = "tests/data/nmea/quectel_lc.nmea"
CANLOG = "tests/data/can/drive_20s.log"


@pytest.fixture(scope="module")
def arm64_root_and_deb(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """The cached root (locked for this module: another run on this machine waits) and the
    .deb built in it. `FLEET_ARM64_DEB=file` uses a .deb built beforehand (`python -m
    hil.chroot deb arm64`) instead, as FLEET_DEB does for the amd64 ones."""
    with chroot.locked(ARCH):
        try:
            prebuilt = os.environ.get("FLEET_ARM64_DEB")
            deb = (Path(prebuilt).resolve() if prebuilt
                   else chroot.build_deb(ARCH, tmp_path_factory.mktemp("arm64")))
            root = chroot.ensure_root(ARCH)
        except chroot.ChrootUnavailable as exc:
            pytest.fail(f"the arm64 chroot cannot run: {exc}")
        yield root, deb


def _copy_gps_sim(smoke: Path) -> None:
    """The test rig's GPS simulator (hil/gps_sim.py, standard library only; not in the package)
    copied to /smoke/rig, run inside the chroot by the package's Python: its pty is then the
    chroot's own (a simulator on the host, its pty reached through the bind-mounted /dev/pts,
    was not read by the agent)."""
    (smoke / "rig" / "hil").mkdir(parents=True)
    (smoke / "rig" / "hil" / "__init__.py").write_text("")
    (smoke / "rig" / "hil" / "gps_sim.py").write_bytes((REPO / "hil" / "gps_sim.py").read_bytes())


def _host(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                         text=True, env=_env(), cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _journaled_times(path: Path) -> list[int]:
    """The device times of the journal's positions, one per row (a duplicate shows twice)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [t for (t,) in db.execute("SELECT ts_ms FROM readings WHERE kind='pos' "
                                         "ORDER BY ts_ms")]


SCRIPT = f"""
exec 2>&1
cd /smoke
apt-get install -y -q ./fleet-agent.deb > apt.log || {{ cat apt.log; exit 1; }}
echo "ARCH $(uname -m) $(dpkg --print-architecture)"
echo "VERSION $({VENV}/fleet-agent --version)"
{VENV}/fleet-agent nmea-decode capture.nmea > nmea.jsonl
DBC=$(ls /opt/venvs/fleet-agent/lib/python3*/site-packages/agent/dbc/truck_j1939.dbc)
{VENV}/fleet-agent can-decode --dbc "$DBC" drive.log > can.jsonl 2> can.err
cat > agent.toml <<EOF
[vehicle]
id = "pi-smoke"
token = "none"
[server]
host = "127.0.0.1"
port = 9
ca_file = "/smoke/pki/ca.pem"
server_name = "localhost"
[journal]
path = "/smoke/journal.sqlite"
commit_interval_ms = 100
[gps]
device = "/smoke/gps.tty"
baud = 9600
decimate = false
[status]
socket = "/smoke/status.sock"
EOF
{VENV}/fleet-agent check-config agent.toml
# the GPS simulator is the test rig's (hil/gps_sim.py, standard library only), not the package's
PYTHONPATH=/smoke/rig {VENV}/python -m hil.gps_sim --link /smoke/gps.tty --rate 5 --count {FIXES} \\
    --record /smoke/sent.jsonl --wait-reader &
SIM=$!
n=0; while [ ! -e /smoke/gps.tty ] && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
{VENV}/fleet-agent --config agent.toml > agent.log 2>&1 &
AGENT=$!
wait $SIM
sleep 3
{VENV}/fleet-agent status --socket /smoke/status.sock --json > status.json
kill -TERM $AGENT; wait $AGENT
echo "AGENT-EXIT $?"
echo "JOURNAL $(sqlite3 journal.sqlite "SELECT count(*) FROM readings WHERE kind='pos'")"
apt-get purge -y -q fleet-agent > purge.log || {{ cat purge.log; exit 1; }}
if dpkg -s fleet-agent >/dev/null 2>&1; then echo "PURGED no"; else echo "PURGED yes"; fi
"""


@pytest.mark.timeout(5400)
def test_arm64_package_installs_decodes_and_journals_in_an_arm64_chroot(arm64_root_and_deb):
    root, deb = arm64_root_and_deb
    assert deb.name.endswith("_arm64.deb"), deb.name
    assert agent_package_problems(deb) == []
    chroot.stop_leftovers(root)  # an interrupted earlier run's agent would share the pty
    smoke = root / "smoke"
    subprocess.run(["rm", "-rf", str(smoke)], check=True)
    smoke.mkdir()
    (smoke / "fleet-agent.deb").write_bytes(deb.read_bytes())
    (smoke / "capture.nmea").write_bytes((REPO / NMEA).read_bytes())
    _copy_gps_sim(smoke)
    (smoke / "drive.log").write_bytes((REPO / CANLOG).read_bytes())
    generate(str(smoke / "pki"), ["localhost"])  # a CA for the (unreachable) gateway
    out = chroot.run(root, SCRIPT, timeout=1800)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line
                 and line.split(" ", 1)[0].isupper())
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert lines.get("ARCH") == "aarch64 arm64", out.stdout[-2000:]
    assert lines.get("VERSION", "").startswith("fleet-agent 0.1.0"), out.stdout[-2000:]

    # the aarch64 build decodes exactly as the host's amd64 one
    assert (smoke / "nmea.jsonl").read_text() == _host("nmea-decode", str(REPO / NMEA))
    dbc = REPO / "agent" / "dbc" / "truck_j1939.dbc"
    arm_can = (smoke / "can.jsonl").read_text()
    assert arm_can and arm_can == _host("can-decode", "--dbc", str(dbc), str(REPO / CANLOG))

    # the agent journaled every fix from the pty GPS, once, with the gateway unreachable
    sent = [json.loads(s) for s in (smoke / "sent.jsonl").read_text().splitlines()]
    assert len(sent) == FIXES
    assert lines.get("JOURNAL") == str(FIXES), (lines, (smoke / "agent.log").read_text())
    assert _journaled_times(smoke / "journal.sqlite") == sorted(f["ts_ms"] for f in sent)
    assert lines.get("AGENT-EXIT") == "0", (smoke / "agent.log").read_text()[-2000:]
    status = json.loads((smoke / "status.json").read_text())
    assert status["journal"]["backlog"] >= FIXES and status["sources"]["gps"]["state"]
    assert lines.get("PURGED") == "yes"


# --- the signed apt repository (hil/aptrepo.py), served on loopback to the same arm64 root ---

VEHICLE = "pi-repo"
REPO_FIXES = 12
KEYRING = aptrepo.KEYRING_PATH
# apt's settings for these checks: Debian's mirror (the root's sources.list) is left out, so apt
# reads only the operator's fleet.sources; lists and downloads are kept under /smoke, leaving
# the cached root's apt state as it was
APT_CONF = """Dir::Etc::SourceList "/dev/null";
Dir::State::Lists "/smoke/lists";
Dir::Cache::Archives "/smoke/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""
# where the package keeps the journal and the configuration (debian/agent.toml): the upgrade's
# maintainer scripts run over both
JOURNAL = "/var/lib/fleet-agent/journal.sqlite"
CONFIG = "/etc/fleet-agent/agent.toml"
# bounds on the waits for the journal (half-second polls of the native sqlite3): fixes
# journaled, and the backlog acknowledged by the backend (the emulated agent's QUIC handshake
# takes seconds)
JOURNAL_POLLS = 300
DRAIN_POLLS = 480
_COUNT_POS = f"sqlite3 {JOURNAL} \"SELECT count(*) FROM readings WHERE kind='pos'\""

# the operator's one-time setup (docs/operations.md), then `apt install fleet-agent`; the agent
# runs with its gateway down while the simulator sends its fixes, which wait in the journal
INSTALL = f"""
exec 2>&1
cd /smoke
install -m 644 -D fleet-archive-keyring.gpg {KEYRING}
install -m 644 fleet.sources /etc/apt/sources.list.d/fleet.sources
mkdir -p lists/partial archives/partial
apt-get update -q > update.log || {{ cat update.log; exit 1; }}
apt-get install -y -q fleet-agent > install.log || {{ cat install.log; exit 1; }}
echo "INSTALLED $(dpkg-query -W -f '${{Version}}' fleet-agent)"
cp agent.toml {CONFIG}
mkdir -p /var/lib/fleet-agent
PYTHONPATH=/smoke/rig {VENV}/python -m hil.gps_sim --link /smoke/gps.tty --rate 5 \\
    --count {REPO_FIXES} --record /smoke/sent.jsonl --wait-reader &
SIM=$!
n=0; while [ ! -e /smoke/gps.tty ] && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
{VENV}/fleet-agent --config {CONFIG} > agent1.log 2>&1 &
AGENT=$!
wait $SIM
n=0
while [ "$({_COUNT_POS} 2>/dev/null)" != {REPO_FIXES} ] && [ $n -lt {JOURNAL_POLLS} ]; do
    sleep 0.5; n=$((n+1))
done
kill -TERM $AGENT; rc=0; wait $AGENT || rc=$?
echo "AGENT-EXIT $rc"
echo "WAITING $({_COUNT_POS})"
"""

# `apt update && apt upgrade` as the operator (or unattended-upgrades) runs it
UPGRADE = f"""
exec 2>&1
cd /smoke
if apt-get update -q > update.log 2>&1; then echo "UPDATE ok"; else echo "UPDATE failed"; fi
if apt-get upgrade -y -q > upgrade.log 2>&1; then echo "UPGRADE ok"; else echo "UPGRADE failed"; fi
echo "VERSION $(dpkg-query -W -f '${{Version}}' fleet-agent)"
echo "CONFIG $(cmp -s agent.toml {CONFIG} && echo kept || echo changed)"
echo "WAITING $({_COUNT_POS})"
"""

# the upgraded agent with the backend up: runs until the journal holds no position
DRAIN = f"""
exec 2>&1
cd /smoke
{VENV}/fleet-agent --config {CONFIG} > agent2.log 2>&1 &
AGENT=$!
n=0
while [ "$({_COUNT_POS} 2>/dev/null)" != 0 ] && [ $n -lt {DRAIN_POLLS} ]; do
    sleep 0.5; n=$((n+1))
done
kill -TERM $AGENT; rc=0; wait $AGENT || rc=$?
echo "AGENT-EXIT $rc"
echo "WAITING $({_COUNT_POS})"
"""

# what the cached root keeps of none of this
CLEANUP = f"""
apt-get purge -y -q fleet-agent >/dev/null 2>&1 || true
rm -rf /var/lib/fleet-agent {KEYRING} /etc/apt/sources.list.d/fleet.sources
"""


def _marked(out: subprocess.CompletedProcess) -> dict[str, str]:
    """The script's `WORD value` lines (it must have succeeded)."""
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line
                and line.split(" ", 1)[0].isupper())


def _journal_rows(path: Path) -> list[tuple]:
    """The journal's positions as stored: (seq, ts_ms, payload), by seq."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute("SELECT seq, ts_ms, payload FROM readings WHERE kind='pos' "
                          "ORDER BY seq").fetchall()


def _next_revision(deb: Path, out: Path) -> tuple[Path, str]:
    """The same package as the next Debian revision (0.2.0-1 -> 0.2.0-2): unpacked, its
    control's Version changed, repacked with dpkg-deb (seconds, where a second build under
    emulation takes minutes). The upgrade still runs the package's real maintainer scripts."""
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    upstream, _, revision = version.rpartition("-")
    assert revision.isdigit(), version
    nxt = f"{upstream}-{int(revision) + 1}"
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    assert f"Version: {version}\n" in text
    control.write_text(text.replace(f"Version: {version}\n", f"Version: {nxt}\n"))
    repacked = out / f"fleet-agent_{nxt}_{ARCH}.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "-b", str(tree), str(repacked)], check=True,
                   capture_output=True)
    shutil.rmtree(tree)
    return repacked, nxt


@contextlib.contextmanager
def _served(directory: Path) -> Iterator[str]:
    """`directory` as static files over HTTP on loopback (bound to a port the kernel picks)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def _gnupg_homes(*homes: Path) -> Iterator[None]:
    """GNUPGHOMEs whose gpg-agents (started by gpg on first use) are stopped afterwards."""
    try:
        yield
    finally:
        for home in homes:
            if home.exists():
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                               capture_output=True)


@pytest.mark.timeout(1800)
def test_signed_apt_repository_installs_upgrades_keeping_the_journal_and_refuses_tampering(
        arm64_root_and_deb, procs, tmp_path):
    root, deb = arm64_root_and_deb
    chroot.stop_leftovers(root)  # an interrupted earlier run's agent would share the pty
    gnupg, other_gnupg, repo = tmp_path / "gnupg", tmp_path / "other-gnupg", tmp_path / "repo"
    keyring = tmp_path / "fleet-archive-keyring.gpg"
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    upgrade, upgrade_version = _next_revision(deb, tmp_path)
    procs.provision(VEHICLE)

    smoke = root / "smoke"
    subprocess.run(["rm", "-rf", str(smoke)], check=True)
    smoke.mkdir()
    _copy_gps_sim(smoke)
    (smoke / "apt.conf").write_text(APT_CONF)
    (smoke / "pki").mkdir()
    shutil.copy(procs.pki["ca"], smoke / "pki" / "ca.pem")
    # the gateway's port is picked, not bound: nothing answers there until procs.backend()
    (smoke / "agent.toml").write_text(
        f'[vehicle]\nid = "{VEHICLE}"\ntoken = "{procs.tokens[VEHICLE]}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {procs.quic_port}\n'
        f'ca_file = "/smoke/pki/ca.pem"\nserver_name = "localhost"\n'
        f'[journal]\npath = "{JOURNAL}"\ncommit_interval_ms = 100\n'
        f'[gps]\ndevice = "/smoke/gps.tty"\nbaud = 9600\ndecimate = false\n'
        f'[status]\nsocket = "/smoke/status.sock"\n')
    env = {"APT_CONFIG": "/smoke/apt.conf"}
    journal = root / JOURNAL.lstrip("/")
    with _gnupg_homes(gnupg, other_gnupg):
        try:
            key = aptrepo.keygen(str(gnupg), keyring)
            shutil.copy(keyring, smoke / keyring.name)
            aptrepo.publish(repo, key, [deb], str(gnupg))
            with _served(repo) as url:
                (smoke / "fleet.sources").write_text(aptrepo.sources(url, KEYRING))

                # apt install from the repository; the fixes wait in the journal
                first = _marked(chroot.run(root, INSTALL, timeout=900, env=env))
                assert first.get("INSTALLED") == version, first
                assert first.get("WAITING") == str(REPO_FIXES), (
                    first, (smoke / "agent1.log").read_text(errors="replace")[-3000:])
                assert first.get("AGENT-EXIT") == "0", (smoke / "agent1.log").read_text()[-3000:]
                sent = [json.loads(s) for s in (smoke / "sent.jsonl").read_text().splitlines()]
                waiting = _journal_rows(journal)
                assert [t for _, t, _ in waiting] == sorted(f["ts_ms"] for f in sent)
                assert procs.stored(VEHICLE) == []

                # the newer version, its Release signed by another key: apt keeps the index it
                # verified before (a warning, exit 0: apt-get update's own behaviour), so the
                # upgrade finds nothing newer
                other = aptrepo.keygen(str(other_gnupg), tmp_path / "other.gpg")
                aptrepo.publish(repo, other, [upgrade], str(other_gnupg))
                forged = _marked(chroot.run(root, UPGRADE, timeout=900, env=env))
                update_log = (smoke / "update.log").read_text()
                assert "NO_PUBKEY" in update_log, update_log
                assert "The repository is not updated" in update_log, update_log
                assert forged.get("VERSION") == version, (smoke / "upgrade.log").read_text()

                # signed by the repository's key, but a byte of the pooled .deb changed
                aptrepo.publish(repo, key, [], str(gnupg))
                pooled = repo / "pool/main/f/fleet-agent" / upgrade.name
                good = pooled.read_bytes()
                pooled.write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF])
                                   + good[len(good) // 2 + 1:])
                tampered = _marked(chroot.run(root, UPGRADE, timeout=900, env=env))
                upgrade_log = (smoke / "upgrade.log").read_text()
                assert tampered.get("UPDATE") == "ok", (smoke / "update.log").read_text()
                assert tampered.get("UPGRADE") == "failed", upgrade_log
                assert "Hash Sum mismatch" in upgrade_log, upgrade_log
                assert tampered.get("VERSION") == version

                # the signed bytes back: `apt upgrade` installs it, journal and config kept
                pooled.write_bytes(good)
                upgraded = _marked(chroot.run(root, UPGRADE, timeout=900, env=env))
                assert upgraded.get("UPGRADE") == "ok", (smoke / "upgrade.log").read_text()
                assert upgraded.get("VERSION") == upgrade_version, upgraded
                assert upgraded.get("CONFIG") == "kept"
                assert _journal_rows(journal) == waiting

            # the upgraded agent delivers every waiting reading, once, to a real backend
            procs.backend()
            drained = _marked(chroot.run(root, DRAIN, timeout=900, env=env))
            assert drained.get("WAITING") == "0", (smoke / "agent2.log").read_text()[-3000:]
            assert drained.get("AGENT-EXIT") == "0", (smoke / "agent2.log").read_text()[-3000:]
            stored = procs.stored(VEHICLE)
            assert sorted(row[2] for row in stored) == sorted(f["ts_ms"] for f in sent)
            assert len({row[1] for row in stored}) == len(stored) == REPO_FIXES
        finally:
            chroot.run(root, CLEANUP, timeout=600, env=env)
            subprocess.run(["rm", "-rf", str(smoke)], check=False)
