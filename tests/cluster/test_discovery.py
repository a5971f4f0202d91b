"""Health-aware discovery (docs/scaling.md §9): the routers' name resolves to the healthy
routers only. The core on a fake clock; then real processes on loopback: nats-server, two
`python -m backend router` publishing health, `python -m backend dns`, queried over UDP with
dnspython (an independent DNS implementation; the responder's wire format is dnslib's)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from backend.cluster import tunnel
from backend.cluster.dns import TTL_S, Answerer
from backend.cluster.health import HEALTH_INTERVAL_S, STALE_AFTER_S, HealthBook, Report
from backend.cluster.router import DEAD_AFTER_S, HEARTBEAT_S
from hil.lifeline import stop_all

from .natsfixture import NatsServer

REPO = Path(__file__).resolve().parents[2]
NAME = "gw.fleet.test."
READY_S = 60.0


def _ask(answerer: Answerer, name: str, now: float, rdtype="A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.message.from_wire(answerer.answer(q.to_wire(), now))


def _addrs(reply: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in reply.answer for r in rrset)


def test_the_name_answers_healthy_routers_only_and_drops_silent_ones():
    book = HealthBook()
    a = Answerer(NAME, book)
    book.report(Report("r1", "router", "192.0.2.1", True), 0.0)
    book.report(Report("r2", "router", "192.0.2.2", True), 0.0)
    book.report(Report("g1", "gateway", "192.0.2.9", True), 0.0)  # not a router
    r = _ask(a, NAME, 0.5)
    assert _addrs(r) == ["192.0.2.1", "192.0.2.2"]
    assert r.flags & dns.flags.AA and r.answer[0].ttl == TTL_S
    book.report(Report("r1", "router", "192.0.2.1", True), 2.0)
    book.report(Report("r2", "router", "192.0.2.2", False), 2.0)  # r2 lost its nodes
    assert _addrs(_ask(a, NAME, 2.1)) == ["192.0.2.1"]
    # r1 falls silent (dead): gone once its last report is STALE_AFTER_S old, not before
    assert _addrs(_ask(a, NAME, 2.0 + STALE_AFTER_S)) == ["192.0.2.1"]
    empty = _ask(a, NAME, 2.0 + STALE_AFTER_S + 0.01)
    assert empty.rcode() == dns.rcode.NOERROR and _addrs(empty) == []
    book.report(Report("r3", "router", "2001:db8::3", True), 10.0)
    assert _addrs(_ask(a, NAME, 10.0)) == []  # no A record for a v6 router
    assert _addrs(_ask(a, NAME, 10.0, "AAAA")) == ["2001:db8::3"]


def test_other_names_and_garbage():
    a = Answerer(NAME, HealthBook())
    assert _ask(a, "x." + NAME, 0.0).rcode() == dns.rcode.NXDOMAIN
    refused = _ask(a, "example.org.", 0.0)
    assert refused.rcode() == dns.rcode.REFUSED and not refused.flags & dns.flags.AA
    assert a.answer(b"\x00\x01garbage", 0.0) is None
    reply = dns.message.make_response(dns.message.make_query(NAME, "A"))
    assert a.answer(reply.to_wire(), 0.0) is None  # answers are not answered


def test_health_report_round_trip_and_rejects():
    r = Report("router-10.0.0.1", "router", "10.0.0.1", True)
    assert Report.decode(r.encode()) == r
    assert r.subject() == "fleet.health.router.router-10_0_0_1"
    for bad in (b"{}", b"[1]", b"not json", b'{"node":1,"role":"router","addr":"x"}',
                # typed fields: an address that is no IP would become a bad DNS record
                b'{"node":"r","role":"router","addr":"evil.example","ok":true}',
                b'{"node":"r","role":"router","addr":"10.0.0.1","ok":"yes"}',
                b'{"node":"' + b"r" * 200 + b'","role":"router","addr":"10.0.0.1","ok":true}',
                b'{"node":"r","role":"router","addr":"10.0.0.1","ok":true,"x":"'
                + b"y" * 20_000 + b'"}', b"[" * 50_000):
        try:
            Report.decode(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def _spawn(tmp: Path, name: str, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "backend", *args], env=env, cwd=REPO,
                            stdout=open(tmp / f"{name}.log", "ab"), stderr=subprocess.STDOUT)


def _wait_log(tmp: Path, name: str, word: str) -> list[int]:
    """Wait for the ready line; returns the ports it names (the servers bind port 0)."""
    deadline = time.monotonic() + READY_S
    while True:
        text = (tmp / f"{name}.log").read_text(errors="replace")
        for line in text.splitlines():
            if word in line:
                return [int(p) for p in re.findall(r":(\d+)\b", line)]
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.1)


def _resolve(port: int) -> list[str]:
    q = dns.message.make_query(NAME, "A")
    return _addrs(dns.query.udp(q, "127.0.0.1", port=port, timeout=2))


async def _until_resolves(port: int, want: list[str], timeout: float) -> float:
    t0 = time.monotonic()
    while (got := await asyncio.to_thread(_resolve, port)) != want:
        assert time.monotonic() - t0 < timeout, f"resolves to {got}, want {want}"
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def test_routers_health_on_nats_drives_a_real_dns_answer(tmp_path, cluster_key):
    nats = NatsServer().start()
    procs = []
    beats = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        procs.append(_spawn(tmp_path, "dns", ["--nats-url", nats.url, "dns", "--name", NAME,
                                              "--listen", "127.0.0.1:0"]))
        tunnels = {}
        for k in (2, 3):  # the addresses they advertise; both listen on loopback
            procs.append(_spawn(tmp_path, f"router{k}", [
                "--nats-url", nats.url, "--cluster-key-file", cluster_key[0], "router",
                "--listen", "127.0.0.1:0",
                "--tunnel", "127.0.0.1:0", "--advertise", f"127.0.0.{k}"]))
        [dns_port] = _wait_log(tmp_path, "dns", "ready")
        for k in (2, 3):
            _, tunnels[k] = _wait_log(tmp_path, f"router{k}", "ready")
        alive = {2, 3}  # routers that hear a gateway node (this test's heartbeats)

        sealer = tunnel.Sealer(cluster_key[1], 7, from_router=False)

        async def node() -> None:
            for _ in range(int(120 / HEARTBEAT_S)):  # bounded: two minutes of beats
                for k in alive:
                    beats.sendto(sealer.heartbeat(time.time_ns() // 1000),
                                 ("127.0.0.1", tunnels[k]))
                await asyncio.sleep(HEARTBEAT_S)

        beat = asyncio.get_running_loop().create_task(node())
        await _until_resolves(dns_port, ["127.0.0.2", "127.0.0.3"], 20)
        alive.discard(3)  # router 3's node is gone: it reports unhealthy
        # timing is the fake-clock test's (exact); here: the real path changes the answer
        took = [await _until_resolves(dns_port, ["127.0.0.2"], 20)]
        procs[1].kill()  # kill -9 router 2: silence, then stale
        procs[1].wait(5)
        took.append(await _until_resolves(dns_port, [], 20))
        print(f"unhealthy → out of the answer in {took[0]:.1f} s (router dead after "
              f"{DEAD_AFTER_S} s + reports every {HEALTH_INTERVAL_S} s); dead → out in "
              f"{took[1]:.1f} s (stale after {STALE_AFTER_S} s)")
        alive.add(3)  # router 3 hears a node again: back in the answer
        await _until_resolves(dns_port, ["127.0.0.3"], 20)
        beat.cancel()
    finally:
        beats.close()
        stop_all(procs)
        nats.close()
