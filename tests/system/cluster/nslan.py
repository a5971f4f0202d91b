"""A LAN of network namespaces for the cluster test: one bridge, one namespace per member.

    bridge ns: br0 ── veth ── member ns "router"  10.204.0.1/24 (eth0)
                   ── veth ── member ns "gw1"     10.204.0.11/24
                   ── …

Each member gets one veth to the bridge and the addresses it is given (a member may have two,
a vehicle's modem and its Wi-Fi). Nothing is routed outside the bridge; the host's own
networks are untouched. `in_netns(name, fn)` runs fn on a thread that entered the member's
namespace (setns is per thread), so a test can open sockets and fork servers there.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading

SUBNET = "10.204.0"
PREFIX_LEN = 24
CLONE_NEWNET = 0x40000000  # <sched.h>: setns(2) into a network namespace
NETNS_DIR = "/var/run/netns"
IP_TIMEOUT_S = 10


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=IP_TIMEOUT_S)


class NsLan:
    def __init__(self, tag: str | None = None):
        self.tag = tag or str(os.getpid())
        self.bridge = f"fa-c{self.tag}-br"
        self.members: dict[str, list[str]] = {}  # member name → addresses

    def ns(self, member: str) -> str:
        return f"fa-c{self.tag}-{member}"

    def exec_args(self, member: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(member)]

    def addr(self, member: str, k: int = 0) -> str:
        return self.members[member][k]

    def build(self, members: dict[str, list[int]]) -> NsLan:
        """members: name → host numbers in SUBNET (the first is the member's main address)."""
        try:
            _ip("netns", "add", self.bridge)
            _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge, "link", "set", "br0", "up")
            for i, (name, hosts) in enumerate(members.items()):
                ns = self.ns(name)
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                port = f"p{i}"
                _ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name",
                    "eth0", "netns", ns)
                _ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
                for h in hosts:
                    _ip("-n", ns, "addr", "add", f"{SUBNET}.{h}/{PREFIX_LEN}", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                self.members[name] = [f"{SUBNET}.{h}" for h in hosts]
        except BaseException:
            self.teardown()
            raise
        return self

    def teardown(self) -> None:
        for name in list(self.members) + [None]:
            _ip("netns", "del", self.bridge if name is None else self.ns(name), check=False)
        self.members.clear()


def in_netns(ns: str, fn, *args):
    """Run fn(*args) on a new thread inside network namespace ns; return its result."""
    box: dict = {}

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({ns})")
            finally:
                os.close(fd)
            box["result"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=body, name=f"netns-{ns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
