"""A test network from Linux network namespaces: vehicle ⇄ router ⇄ backend.

    vehicle ns                 router ns                  backend ns
    up1 10.201.1.2/24 ──────── r1 10.201.1.1
    up2 10.201.2.2/24 ──────── r2 10.201.2.1
                               rb 10.201.3.1 ──────────── be 10.201.3.2/24

The vehicle has two uplinks (think LTE modem and depot Wi-Fi); `use_uplink(n)` makes uplink n
the default route and takes the other one down, so the vehicle's address really changes and
the old path really dies. Traffic stays inside the namespaces; nothing reaches the host's
networks. Needs root and `ip` (iproute2); `available()` says why not otherwise, and callers fall
back to loopback.

    python -m hil.netns up [--name ID]       build and print the namespace names
    python -m hil.netns move N [--name ID]   switch the vehicle to uplink N (1 or 2)
    python -m hil.netns down [--name ID]     delete the namespaces
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

PREFIX = "fa-"
BACKEND_ADDR = "10.201.3.2"
# the router's address on the backend side: reachable from the vehicle over either uplink
# (relays for delay emulation listen here, hil/linkemu.py and hil/tcplink.py)
ROUTER_ADDR = "10.201.3.1"
VEHICLE_ADDRS = {1: "10.201.1.2", 2: "10.201.2.2"}
_ROUTER_ADDRS = {1: "10.201.1.1", 2: "10.201.2.1"}
LINK_UP_TIMEOUT_S = 5.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=10)


def available() -> tuple[bool, str]:
    """Whether namespaces can be built here, and if not, why."""
    if os.geteuid() != 0:
        return False, "not root: network namespaces need CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return False, "no `ip` command (iproute2)"
    probe = f"{PREFIX}probe-{os.getpid()}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return False, f"`ip netns add` failed: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return True, ""


class NetnsRig:
    def __init__(self, name: str | None = None, prefix: str = PREFIX):
        tag = name or str(os.getpid())
        self.vehicle = f"{prefix}veh-{tag}"
        self.router = f"{prefix}rtr-{tag}"
        self.backend = f"{prefix}be-{tag}"
        self.active = 1

    def exec_args(self, ns: str) -> list[str]:
        """Prefix for running a command inside namespace ns."""
        return ["ip", "netns", "exec", ns]

    def _in(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _ip("-n", ns, *args, check=check)

    def build(self) -> NetnsRig:
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def _build(self) -> None:
        for ns in (self.vehicle, self.router, self.backend):
            _ip("netns", "add", ns)
            self._in(ns, "link", "set", "lo", "up")
        # veth pairs are created in the vehicle/backend namespace and one end moved to the router
        for n in (1, 2):
            self._in(self.vehicle, "link", "add", f"up{n}", "type", "veth", "peer", "name",
                     f"r{n}")
            self._in(self.vehicle, "link", "set", f"r{n}", "netns", self.router)
            self._in(self.vehicle, "addr", "add", f"{VEHICLE_ADDRS[n]}/24", "dev", f"up{n}")
            self._in(self.router, "addr", "add", f"{_ROUTER_ADDRS[n]}/24", "dev", f"r{n}")
            self._in(self.router, "link", "set", f"r{n}", "up")
        self._in(self.backend, "link", "add", "be", "type", "veth", "peer", "name", "rb")
        self._in(self.backend, "link", "set", "rb", "netns", self.router)
        self._in(self.backend, "addr", "add", f"{BACKEND_ADDR}/24", "dev", "be")
        self._in(self.backend, "link", "set", "be", "up")
        self._in(self.backend, "route", "add", "default", "via", ROUTER_ADDR)
        self._in(self.router, "addr", "add", f"{ROUTER_ADDR}/24", "dev", "rb")
        self._in(self.router, "link", "set", "rb", "up")
        # strict reverse-path filter: a packet the vehicle still sends from the address of the
        # uplink that went down (over the other uplink) is dropped, as a carrier drops spoofed
        # sources, so the old path is really dead in both directions
        subprocess.run([*self.exec_args(self.router), "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv4.conf.all.rp_filter=1"],
                       check=True, capture_output=True, timeout=10)
        # ARP requests from the vehicle carry the address of the uplink they leave on (not the
        # source of the packet that triggered them, which may be the old uplink's address just
        # after a move, and which the router's reverse-path filter would then ignore)
        subprocess.run([*self.exec_args(self.vehicle), "sysctl", "-qw",
                        "net.ipv4.conf.all.arp_announce=2"],
                       check=True, capture_output=True, timeout=10)
        self._in(self.vehicle, "link", "set", "up1", "up")
        self._in(self.vehicle, "route", "add", "default", "via", _ROUTER_ADDRS[1])
        self.active = 1

    def bring_up(self, n: int) -> None:
        """Bring uplink n's link up and wait until both ends carry traffic, like a modem that
        has attached before the route moves to it. (A veth end that just got its carrier
        drops what it sends until the kernel's link watch has activated it, about a
        millisecond later; an ARP reply lost there costs the 1 s ARP retry.)"""
        self._in(self.vehicle, "link", "set", f"up{n}", "up")
        deadline = time.monotonic() + LINK_UP_TIMEOUT_S
        while not (self._oper_up(self.vehicle, f"up{n}") and self._oper_up(self.router, f"r{n}")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"uplink {n} did not come up")
            time.sleep(0.001)

    def _oper_up(self, ns: str, dev: str) -> bool:
        return " state UP " in self._in(ns, "-o", "link", "show", dev).stdout

    def switch_to(self, n: int) -> str:
        """Move the default route to uplink n and take the other one down; returns n's address.
        Both steps in one `ip` process (~2 ms), so the move itself stays small next to the
        handovers the tests and benchmarks measure."""
        other = 2 if n == 1 else 1
        subprocess.run(["ip", "-n", self.vehicle, "-batch", "-"], check=True, capture_output=True,
                       text=True, timeout=10, input=(
                           f"route replace default via {_ROUTER_ADDRS[n]} dev up{n}\n"
                           f"link set up{other} down\n"))
        self.active = n
        return VEHICLE_ADDRS[n]

    def use_uplink(self, n: int) -> str:
        """Make uplink n the vehicle's only working path; returns its address."""
        self.bring_up(n)
        return self.switch_to(n)

    def teardown(self) -> None:
        for ns in (self.vehicle, self.router, self.backend):
            _ip("netns", "del", ns, check=False)

    def __enter__(self) -> NetnsRig:
        return self.build()

    def __exit__(self, *exc) -> None:
        self.teardown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.netns", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["up", "down", "move", "check"])
    p.add_argument("uplink", nargs="?", type=int, default=1)
    p.add_argument("--name", default="demo", help="suffix of the namespace names")
    args = p.parse_args(argv)
    ok, why = available()
    if args.action == "check" or not ok:
        print("network namespaces available" if ok else f"no namespaces: {why}; "
              "use the loopback variants")
        return 0 if ok else 1
    rig = NetnsRig(args.name)
    if args.action == "up":
        rig.build()
        print(f"vehicle={rig.vehicle} router={rig.router} backend={rig.backend} "
              f"backend_addr={BACKEND_ADDR}")
    elif args.action == "move":
        print(rig.use_uplink(args.uplink))
    else:
        rig.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
