#!/bin/sh
# Inside the Debian VM (real systemd), from the payload disk /hil: install the fleet-agent and
# fleet-backend .debs the way an operator would, provision and start the packaged backend,
# configure the agent for the GPS on /dev/ttyS1 (fed by the host through qemu) and CAN on vcan0, and start it with
# systemctl. Every fact the host checks is a serial line starting with HIL:.
# tests/system/test_deb_vm.py runs it; /hil/params sets VEHICLE, FIXES and WAIT_S.
set -u
. /hil/params
VENV=/opt/venvs/fleet-agent
BACKEND_VENV=/opt/venvs/fleet-backend
DB=/var/lib/fleet-backend/fleet.db

say() { echo "HIL:$*"; }
mark() { say "MARK $*"; }  # the host's timeline of the run: where the guest's time goes
logs() {
    journalctl --no-pager -o short-monotonic -u fleet-agent -u fleet-backend 2>&1 \
        | tail -n 60 | sed 's/^/HIL:LOG /'
}
fail() { say "FAIL $*"; logs; exit 1; }
# props TAG PROPERTY...: fleet-agent.service's properties as one line HIL:UNIT TAG {json}
props() {
    tag=$1; shift
    systemctl show -p "$(echo "$@" | tr ' ' ,)" fleet-agent | python3 -c '
import json, sys
print("HIL:UNIT " + sys.argv[1] + " " + json.dumps(
    dict(line.rstrip("\n").split("=", 1) for line in sys.stdin if "=" in line)))' "$tag"
}
# wait_until SECONDS COMMAND...: poll every 0.5 s
wait_until() {
    limit=$(( $1 * 2 )); shift
    n=0
    until "$@"; do
        n=$((n + 1))
        [ "$n" -ge "$limit" ] && return 1
        sleep 0.5
    done
}

# dpkg without an fsync per unpacked file (~8,000 in the two virtualenvs): each is a disk
# flush of the emulated machine; nothing here tests dpkg's own crash safety
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o Dpkg::Options::=--force-unsafe-io"

# 1. apt install, as on a vehicle: no network, every dependency already in the image. The
# image keeps debootstrap's index of the whole archive (50 MB), which apt would parse at each
# of the four calls below (3.4 s of CPU on the host, about a minute each under emulation)
# to resolve nothing: every dependency is installed. A vehicle's apt has its own lists.
say "STEP install"
rm -f /var/lib/apt/lists/*_Packages
$APT install -y -q /hil/fleet-agent_*.deb \
    /hil/fleet-backend_*.deb >/hil/apt.log 2>&1 \
    || { sed 's/^/HIL:APT /' /hil/apt.log; fail "apt-get install"; }
mark installed
versions() { dpkg-query -W -f '${Version} ${db:Status-Status} ' fleet-agent fleet-backend | sed 's/ $//'; }
say "INSTALLED $(versions)"
for unit in fleet-agent fleet-backend; do
    say "ENABLED $unit $(systemctl is-enabled $unit 2>&1)"
done
# the package starts the enabled agent at once: with no agent.toml yet it must wait quietly
sleep 3
props installed ActiveState SubState Result NRestarts
DBC=$(ls $VENV/lib/python3*/site-packages/agent/dbc/truck_j1939.dbc 2>/dev/null)
say "DBC ${DBC:-missing}"

# 2. the backend, provisioned with the packaged program and started by its unit
say "STEP backend"
install -d -m 0750 -o root -g fleet-backend /etc/fleet-backend
cat > /etc/fleet-backend/backend.toml <<EOF
db = "sqlite://$DB"
quic_host = "127.0.0.1"
quic_port = 4433
http_port = 8080
EOF
BACKEND="$BACKEND_VENV/bin/fleet-backend --config /etc/fleet-backend/backend.toml"
$BACKEND gen-certs --out /etc/fleet-backend --name localhost --name 127.0.0.1 >/dev/null \
    || fail "gen-certs"
mark gen-certs
chgrp fleet-backend /etc/fleet-backend/backend.toml /etc/fleet-backend/server.key
chmod 0640 /etc/fleet-backend/backend.toml /etc/fleet-backend/server.key
install -d -m 0750 -o fleet-backend -g fleet-backend /var/lib/fleet-backend
runuser -u fleet-backend -- $BACKEND migrate >/dev/null || fail "migrate"
mark migrated
say "SCHEMA $(sqlite3 "$DB" "SELECT group_concat(version, ' ') FROM (SELECT version FROM schema_migrations ORDER BY version)")"
TOKEN=$(runuser -u fleet-backend -- $BACKEND vehicles add "$VEHICLE") || fail "vehicles add"
mark vehicle-added
systemctl start fleet-backend || fail "systemctl start fleet-backend"
wait_until 120 python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz')" \
    2>/dev/null || fail "backend /healthz not answering"
say "BACKEND up"

# 3. the agent's configuration: GPS on the second UART, CAN on vcan0 with the packaged DBC
say "STEP agent"
install -m 0644 /etc/fleet-backend/ca.pem /etc/fleet-agent/ca.pem
cat > /etc/fleet-agent/agent.toml <<EOF
[vehicle]
id = "$VEHICLE"
token = "$TOKEN"

[server]
host = "127.0.0.1"
port = 4433
ca_file = "/etc/fleet-agent/ca.pem"
server_name = "localhost"
send_interval_ms = 500

[journal]
path = "/var/lib/fleet-agent/journal.sqlite"

[gps]
device = "/dev/ttyS1"
baud = 9600
decimate = false

[[can.bus]]
name = "truck"
interface = "socketcan"
channel = "vcan0"
dbc = ["truck_j1939.dbc"]
signals = ["EngSpeed", { name = "CCVS1.WheelBasedVehicleSpeed", min_interval_ms = 500 },
           "EngCoolantTemp"]
EOF
chown root:fleet-agent /etc/fleet-agent/agent.toml
chmod 0640 /etc/fleet-agent/agent.toml
modprobe vcan && ip link add vcan0 type vcan && ip link set up vcan0 || fail "vcan0"
say "TTYS1 $(stat -c '%U:%G %a' /dev/ttyS1)"

systemctl start fleet-agent
say "START rc=$?"
PID=$(systemctl show -p MainPID --value fleet-agent)
has_status() { [ -n "$(systemctl show -p StatusText --value fleet-agent)" ]; }
wait_until 30 has_status
props started Type ActiveState SubState NRestarts StatusText

# the host starts sending NMEA once the agent holds the port open (opening flushes the input)
has_tty() { ls -l /proc/"$PID"/fd 2>/dev/null | grep -q ' -> /dev/ttyS1$'; }
wait_until 60 has_tty || fail "agent (pid $PID) never opened /dev/ttyS1"
sleep 1
canplayer -I /hil/drive.log vcan0=can0 &
PLAYER=$!
say "GPS-READY"

# 4. wait for every fix the host sends to reach the database, then report what is stored
positions() {
    sqlite3 "file:$DB?mode=ro" \
        "SELECT count(*) FROM vehicle_telemetry WHERE vehicle_id='$VEHICLE' AND kind='pos'" \
        2>/dev/null || echo 0
}
all_stored() { [ "$(positions)" -ge "$FIXES" ]; }
wait_until "$WAIT_S" all_stored || say "TIMEOUT $(positions) of $FIXES positions stored"
wait "$PLAYER"
say "CANPLAYER rc=$?"
sleep 3  # anything stored twice would arrive now
props running ActiveState SubState NRestarts StatusText
python3 - "$DB" "$VEHICLE" <<'EOF'
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for row in db.execute("SELECT time_ms, lat, lon, epoch, seq FROM vehicle_telemetry "
                      "WHERE vehicle_id=? AND kind='pos' ORDER BY seq", (sys.argv[2],)):
    print("HIL:POS " + json.dumps(row))
counts = {}
for (data,) in db.execute("SELECT data FROM vehicle_telemetry WHERE vehicle_id=? "
                          "AND kind='can'", (sys.argv[2],)):
    for name in json.loads(data):
        counts[name] = counts.get(name, 0) + 1
print("HIL:CAN " + json.dumps(counts, sort_keys=True))
EOF

# 5. a clean stop
say "STEP stop"
systemctl stop fleet-agent
say "STOP rc=$?"
props stopped ActiveState Result ExecMainCode ExecMainStatus NRestarts

# 6. the operator's view: status over the socket (root yes, others no), journald fields, reload
say "STEP operate"
systemctl start fleet-agent || fail "second start"
status_json() { $VENV/bin/fleet-agent status --json 2>/dev/null | tr -d '\n'; }
status_ok() { $VENV/bin/fleet-agent status >/dev/null 2>&1; }
wait_until 30 status_ok
say "STATUS $(status_json)"
say "SOCKET $(stat -c '%U:%G %a' /run/fleet-agent/status.sock 2>&1)"
runuser -u nobody -- $VENV/bin/fleet-agent status >/dev/null 2>&1
say "STATUS-NOBODY rc=$?"
systemctl reload fleet-agent >/hil/reload.log 2>&1
rc=$?
say "RELOAD rc=$rc $(systemctl show -p ActiveState,SubState --value fleet-agent | tr '\n' ' ') $(tr '\n' ' ' < /hil/reload.log)"
[ "$rc" = 0 ] || journalctl --no-pager -o short-monotonic -u fleet-agent -n 12 | sed 's/^/HIL:RELOAD-LOG /'
sleep 2
journalctl --no-pager -o json -u fleet-agent | python3 -c '
import json, sys
fields = {"COMPONENT": set(), "VEHICLE": set(), "reloaded": 0}
for line in sys.stdin:
    e = json.loads(line)
    for k in ("COMPONENT", "VEHICLE"):
        if k in e:
            fields[k].add(e[k])
    fields["reloaded"] += "SIGHUP: reloaded" in str(e.get("MESSAGE", ""))
print("HIL:JOURNALD " + json.dumps({k: sorted(v) if isinstance(v, set) else v
                                    for k, v in fields.items()}))'

# 7. offline: the backend stops, CAN readings pile up in the journal
say "STEP offline"
systemctl stop fleet-backend
canplayer -I /hil/drive.log vcan0=can0
sleep 2
JOURNAL=/var/lib/fleet-agent/journal.sqlite
sqlite3 "file:$JOURNAL?mode=ro" "SELECT seq FROM readings ORDER BY seq" > /hil/pending.txt
EPOCH=$(sqlite3 "file:$JOURNAL?mode=ro" "SELECT value FROM meta WHERE key='epoch'")
say "PENDING $(wc -l < /hil/pending.txt)"

# 8. upgrade to the next version while readings wait: they survive and are delivered
say "STEP upgrade"
$APT install -y -q /hil/next/fleet-agent_*.deb \
    /hil/next/fleet-backend_*.deb >/hil/apt-upgrade.log 2>&1 \
    || { sed 's/^/HIL:APT /' /hil/apt-upgrade.log; fail "upgrade"; }
mark upgraded
say "UPGRADED $(versions)"
say "CONFFILE $(grep -c "^id = \"$VEHICLE\"" /etc/fleet-agent/agent.toml) $(stat -c '%U:%G %a' /etc/fleet-agent/agent.toml)"
systemctl start fleet-backend || fail "backend after upgrade"
mark backend-started
backlog_empty() {
    status_json | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["journal"]["backlog"] != 0)' 2>/dev/null
}
wait_until 180 backlog_empty || say "TIMEOUT backlog not drained"
mark drained
sleep 2
python3 - "$DB" "$VEHICLE" "$EPOCH" /hil/pending.txt <<'PYEOF'
import json, sqlite3, sys
db, vehicle, epoch, pending = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
seqs = [int(line) for line in open(pending) if line.strip()]
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
counts = dict(con.execute("SELECT seq, count(*) FROM vehicle_telemetry WHERE vehicle_id=? "
                          "AND epoch=? GROUP BY seq", (vehicle, epoch)))
print("HIL:DELIVERED " + json.dumps({
    "pending": len(seqs), "once": sum(counts.get(s) == 1 for s in seqs),
    "missing": sum(s not in counts for s in seqs),
    "duplicated": sum(counts.get(s, 0) > 1 for s in seqs)}))
PYEOF

# 9. remove keeps state, configuration and users; purge removes them
say "STEP remove"
paths() {
    for p in /var/lib/fleet-agent/journal.sqlite /etc/fleet-agent/agent.toml /var/lib/fleet-backend; do
        [ -e "$p" ] && printf '%s ' "$p"
    done
    getent passwd fleet-agent >/dev/null && printf 'user:fleet-agent '
    getent passwd fleet-backend >/dev/null && printf 'user:fleet-backend '
    echo
}
logs
# both services are running here: each package's prerm stops its own (the backend's unit is
# installed --no-start, so debhelper alone would leave it running and its user undeletable)
say "BEFORE-REMOVE $(systemctl is-active fleet-agent fleet-backend | paste -sd' ')"
$APT remove -y -q fleet-agent fleet-backend >/hil/apt-remove.log 2>&1
rc=$?
mark removed
say "REMOVE rc=$rc $(dpkg-query -W -f '${db:Status-Status}' fleet-agent 2>&1)"
say "AFTER-REMOVE $(paths)"
# processes of the system users left after remove (minbase has no ps: their /proc owners)
say "REMOVED-PROCS $(stat -c %U /proc/[0-9]* 2>/dev/null | grep -c '^fleet-' || true)"
$APT purge -y -q fleet-agent fleet-backend >/hil/apt-purge.log 2>&1
say "PURGE rc=$? $(dpkg-query -W -f '${db:Status-Status}' fleet-agent 2>&1 | head -c 60)"
say "AFTER-PURGE $(paths)"
say "DONE"
