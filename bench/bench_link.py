"""Link benchmark: geostream/QUIC vs MQTT 3.1.1 over TLS (paho-mqtt → mosquitto), same run.

    python bench/bench_link.py [--rtt-ms 50] [--handovers 15] [--readings 100] [--backlog 36000]
                               [--mode auto|netns|loopback]

Where root and `ip netns` work, everything runs in network namespaces (hil/netns.py):

    vehicle ns: agent uplink, paho client ⇄ router ns: UDP + TCP relays ⇄ backend ns: gateway,
    (two uplinks, 10.201.1.2 / .2.2)          (10.201.3.1, delay)          mosquitto (10.201.3.2)

Elsewhere the same processes run on loopback (the reason is printed). Both clients reach their
server through a user-space relay with the same one-way delay: hil/linkemu.py for QUIC,
hil/tcplink.py for MQTT; the relays act as the carrier's NAT. Measures, with MQTT in the same run:

1. handover gap = last acknowledgement before the handover → first acknowledgement after it,
   readings at 10 Hz; each handover happens right after an acknowledgement and one reading is
   sent at once after it (so the reading interval does not blur the figure; the agent runs
   unpaced here, `send_interval_ms = 0`, sending every reading at once like the MQTT client).
   Two scenarios:
   a. address change: the vehicle moves to its other uplink (new source address; on loopback:
      another 127.x address). Both clients get the same notice: the agent's route watch sees the
      route change and migrates its connection (on loopback the bench calls migrate()); the MQTT
      client is told as soon as the move is done and reconnects at once.
   b. NAT rebinding: the relays give the vehicle a new source port (hil.linkemu rebind; TCP:
      hil.tcplink forgets the mapping, the client's next segment is answered with an RST).
      Neither client is told. paho runs its own network thread and reconnect logic, once with
      its defaults (reconnect delay 1 s) and once with the delay set to 0.
   MQTT's acknowledgement is the QoS 1 PUBACK (broker received); ours is the gateway's ack after
   its database commit.
2. bytes on the wire per reading (UDP resp. TCP payload both ways, headers excluded), steady
   10 Hz stream, as a live tracker sends them: the agent at its default pacing (a batch per
   second) and unpaced (a batch per 200 ms journal commit); and per reading during a backlog
   drain.
3. drain time of a backlog of N readings over the emulated link.
Bounded: every wait has a timeout, every stream a count; all processes, mosquitto and the
namespaces are stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.pki import generate
from hil import netns

REPO = Path(__file__).resolve().parents[1]
RIG_PREFIX = "fa-bl-"  # namespaces of this bench: fa-bl-veh-<pid>, fa-bl-rtr-<pid>, fa-bl-be-<pid>
CLIENT_TIMEOUT_S = 600


class Role:
    """One process of bench/link_roles.py, in a namespace or on loopback."""

    def __init__(self, name: str, tmp: Path, ns: str | None, cfg: dict):
        self.name = name
        self.log = tmp / f"{name}.log"
        prefix = ["ip", "netns", "exec", ns] if ns else []
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "bench.link_roles", name], cwd=REPO, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.proc.stdin.write(json.dumps(cfg).encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, min(left, 1.0)))
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
            if (not ready and left <= 0) or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} gave no answer; its log:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()  # services end when their stdin closes
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def choose_mode(mode: str) -> tuple[bool, str]:
    """(use namespaces, why not)."""
    if mode == "loopback":
        return False, "chosen with --mode loopback"
    ok, why = netns.available()
    if mode == "netns" and not ok:
        raise SystemExit(f"network namespaces unavailable: {why}")
    return ok, why


def run(args, use_netns: bool) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory(prefix="bench-link-") as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        rig = None
        if use_netns:
            rig = netns.NetnsRig(str(os.getpid()), prefix=RIG_PREFIX)
            stack.callback(rig.teardown)
            rig.build()
        backend_host = netns.BACKEND_ADDR if rig else "127.0.0.1"
        relay_host = netns.ROUTER_ADDR if rig else "127.0.0.1"
        pki = generate(str(tmp / "pki"), ["localhost", "127.0.0.1", netns.ROUTER_ADDR])
        common = {"tmp": str(tmp), "pki": pki, "control": str(tmp / "relay.sock")}

        def start(name: str, ns: str | None, cfg: dict) -> Role:
            role = Role(name, tmp, ns, {**common, **cfg})
            stack.callback(role.stop)
            return role

        be = start("backend", rig and rig.backend,
                   {"host": backend_host,
                    "vehicles": ["bench-paced", "bench-live", "bench-backlog"]})
        ready = be.read(60)
        rl = start("relay", rig and rig.router,
                   {"host": relay_host, "target": backend_host, "rtt_s": args.rtt_ms / 1000,
                    "quic_port": ready["quic_port"], "mqtt_port": ready["mqtt_port"]})
        ports = rl.read(60)
        client = {"relay_host": relay_host, "udp_port": ports["udp_port"],
                  "tcp_port": ports["tcp_port"], "tokens": ready["tokens"],
                  "handovers": args.handovers, "readings": args.readings,
                  "backlog": args.backlog,
                  "rig": {"name": str(os.getpid()), "prefix": RIG_PREFIX} if rig else None}
        results = []
        for name in ("quic", "mqtt"):
            role = start(name, rig and rig.vehicle, client)
            results.append(role.read(CLIENT_TIMEOUT_S)["result"])
            role.stop()
        return results[0], results[1]


def ms(gaps: list[float]) -> str:
    return f"{statistics.median(gaps) * 1000:.0f} ms (max {max(gaps) * 1000:.0f})"


def ratio(q: list[float], m: list[float]) -> float:
    return statistics.median(q) / statistics.median(m)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rtt-ms", type=float, default=50.0)
    p.add_argument("--handovers", type=int, default=15)
    p.add_argument("--readings", type=int, default=100, help="readings for the bytes figure")
    p.add_argument("--backlog", type=int, default=36000)
    p.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto",
                   help="auto: namespaces where root and `ip netns` work, else loopback")
    args = p.parse_args(argv)
    use_netns, why = choose_mode(args.mode)
    if use_netns:
        where = ("network namespaces: vehicle (two uplinks) ⇄ router (relays) ⇄ backend "
                 "(gateway, mosquitto)")
    else:
        where = f"loopback ({why})" if args.mode == "loopback" else \
            f"loopback (network namespaces unavailable: {why})"
        print(f"link benchmark on loopback: {why}", flush=True)
    quic, mqtt = run(args, use_netns)
    n = args.handovers
    print(f"link benchmark, emulated RTT {args.rtt_ms:.0f} ms, 10 Hz positions; {where}")
    print(f"handover gap, address change (median of {n}; both told at once): QUIC migration "
          f"{ms(quic['gaps_address'])}, MQTT/TLS reconnect {ms(mqtt['gaps_address'])} "
          f"-> ratio {ratio(quic['gaps_address'], mqtt['gaps_address']):.2f} (goal <= 0.3)")
    print(f"handover gap, NAT rebinding (median of {n}; neither told): "
          f"QUIC {ms(quic['gaps_rebind'])}, MQTT/TLS paho defaults {ms(mqtt['gaps_rebind'])} "
          f"-> ratio {ratio(quic['gaps_rebind'], mqtt['gaps_rebind']):.2f} (goal <= 0.3); "
          f"MQTT with reconnect delay 0 {ms(mqtt['gaps_rebind_no_backoff'])} "
          f"-> ratio {ratio(quic['gaps_rebind'], mqtt['gaps_rebind_no_backoff']):.2f}")
    noticed = (f", the route watch had migrated when the move command returned in "
               f"{quic['migrated_before_reading']} of {n} moves" if use_netns else "")
    print(f"  (QUIC: one connection throughout: {quic['handshakes']} handshake, "
          f"{quic['migrations']} migrations{noticed})")
    qa, ma = quic["parts_address"], mqtt["parts_address"]
    print(f"  (address change, medians: QUIC move {qa['change'] * 1000:.0f} ms + journal commit "
          f"{qa['commit'] * 1000:.0f} ms + to ack {qa['to_ack'] * 1000:.0f} ms; MQTT move "
          f"{ma['change'] * 1000:.0f} ms + TCP/TLS connect {ma['tcp_tls'] * 1000:.0f} ms + "
          f"publish to PUBACK {ma['to_ack'] * 1000:.0f} ms)")
    qr = quic["parts_rebind"]
    print(f"  (NAT rebinding, QUIC medians: rebind request {qr['change'] * 1000:.0f} ms + journal "
          f"commit {qr['commit'] * 1000:.0f} ms + to ack {qr['to_ack'] * 1000:.0f} ms)")
    qb, mb = quic["bytes_per_reading"], mqtt["bytes_per_reading"]
    qbu = quic["bytes_per_reading_unpaced"]
    print(f"bytes per reading, live 10 Hz (agent at its default pacing, a batch per second; "
          f"MQTT: a publish per reading): geostream/QUIC {qb:.0f} "
          f"({quic['datagrams_per_reading']:.1f} datagrams), MQTT 3.1.1+JSON/TLS {mb:.0f} "
          f"-> ratio {qb / mb:.2f} (goal <= 0.25)")
    print(f"  (unpaced, a batch per 200 ms journal commit: {qbu:.0f} "
          f"({quic['datagrams_per_reading_unpaced']:.1f} datagrams) -> ratio {qbu / mb:.2f})")
    qbb = quic["bytes_per_reading_backlog"]
    print(f"bytes per reading, backlog drain (batched): geostream/QUIC {qbb:.0f} "
          f"-> ratio {qbb / mb:.2f} vs live MQTT")
    print(f"backlog of {quic['readings']} readings drained in {quic['drain_s']:.1f} s "
          f"({quic['readings'] / quic['drain_s']:.0f} readings/s)")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps({"mode": where, "quic": quic,
                                                              "mqtt": mqtt}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
