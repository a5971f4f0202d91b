"""The Raspberry Pi package: the .deb built for arm64 and smoke-tested in an arm64 Debian 12
chroot under qemu-user-static (hil/chroot.py), the way `apt install fleet-agent` runs on a Pi 4/5.

In the chroot: `apt-get install` of the package (it has no init, so services are not started),
`fleet-agent --version` from the aarch64 virtualenv, `nmea-decode` and `can-decode` on the
sample captures (their output must equal the host's, amd64), and the agent journaling fixes from
a pty GPS (the test rig's hil.gps_sim, copied in) with its gateway unreachable: every fix the
simulator sent is in the journal exactly once. Then `apt-get purge`.

Cost, measured on the shared 2-core machine (load average ~10, docs/benchmarks.md "arm64
package"): warm (root and wheels cached under /var/tmp/fleet-agent-chroot/) 392 s, the build
~5.5 min of it; cold about 25 min: the minbase debootstrap 957 s, the host's download of the
aarch64 wheels ~2.5 min, then the warm run. Nothing compiles and no Node.js runs under
emulation (hil/chroot.py). Needs root, debootstrap, qemu-user-static (`make deps-test`) and
the network for a cold cache: without them it fails, it never skips.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.pki import generate
from hil import chroot
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
    .deb built in it."""
    with chroot.locked(ARCH):
        try:
            deb = chroot.build_deb(ARCH, tmp_path_factory.mktemp("arm64"))
            root = chroot.ensure_root(ARCH)
        except chroot.ChrootUnavailable as exc:
            pytest.fail(f"the arm64 chroot cannot run: {exc}")
        yield root, deb


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
    (smoke / "rig" / "hil").mkdir(parents=True)
    (smoke / "rig" / "hil" / "__init__.py").write_text("")
    (smoke / "rig" / "hil" / "gps_sim.py").write_bytes((REPO / "hil" / "gps_sim.py").read_bytes())
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
