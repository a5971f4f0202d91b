"""The HIL rig for users: `python -m hil SCENARIO` drives a real backend and a real agent on
loopback (hil/rig.py) through one disturbance and prints what happened to every reading.

- drive: nothing in the way.
- tunnel: the link goes dark for `--blackout-s` (120 and 900 in `make hil`).
- handover: the vehicle's address changes `--handovers` times mid-stream (hil.linkemu's NAT
  rebinding: the gateway sees datagrams from a new port; QUIC migrates the connection). With
  `--netns` (root) the backend and agent run in network namespaces and the vehicle itself
  moves between two uplinks (hil/netns.py): the agent migrates to its new address.
- crash: kill -9 of the agent `--crashes` times at random moments, restarted as systemd would.
- reboot: `--reboots` times, the agent's process group is stopped as systemd stops a service
  (SIGTERM, SIGKILL after TimeoutStopSec), the link is down while the vehicle boots
  (`--boot-s`), then the agent starts again.
- power-cut: `--cuts` times, kill -9 of the agent's process group, then its journal's files are
  rolled back to what was fsynced (hil/powercut.py), the link is down for `--boot-s`.
- disk-full: the journal lives on a `--fs-mb` tmpfs; another writer fills it for `--full-s`
  while the link is dark (so the journal must grow), then the space comes back.

`recover_s` runs from the end of the disturbance (the agent's last restart; disk-full: the
space's return) until the agent is connected and the backlog is down to what live readings
keep in flight.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import subprocess
import time

from hil import powercut
from hil.rig import STARTUP_S, Report, Rig, until

# the agent's liveness probe and backoff bring it back within seconds of the link's return;
# past this the scenario reports a failure to recover instead of waiting forever
RECOVER_LIMIT_S = 180.0
# systemd's stop timeout for fleet-agent.service (TimeoutStopSec=20): SIGKILL after it
STOP_TIMEOUT_S = 20.0
# scenarios in which the agent dies: fixes the GPS sends meanwhile are never read
AGENT_DIES = {"crash", "reboot", "power-cut"}
FILL_CHUNK = 64 * 1024  # the disk filler writes this much at a time until ENOSPC
POLL_S = 0.2


async def _tunnel(rig: Rig, rng: random.Random, report: Report) -> None:
    rig.emu.blackout(rig.args.blackout_s)
    await asyncio.sleep(rig.args.blackout_s)


def _prepare_handover(rig: Rig) -> None:
    if rig.args.netns:
        from hil.netns import NetnsRig, available

        ok, why = available()
        if not ok:
            raise RuntimeError(f"handover --netns needs network namespaces: {why}")
        rig.net = NetnsRig(f"hil{os.getpid()}").build()


async def _handover(rig: Rig, rng: random.Random, report: Report) -> None:
    for _ in range(rig.args.handovers):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        if rig.net:  # the vehicle's own address changes: the other uplink, the old one down
            await asyncio.to_thread(rig.net.use_uplink, 2 if rig.net.active == 1 else 1)
        else:  # the carrier's NAT gives the vehicle a new public port
            await rig.emu.rebind()
    report.detail["address changes"] = rig.args.handovers
    report.detail["how"] = ("the vehicle moves between two uplinks (hil/netns.py)" if rig.net
                            else "NAT rebinding in hil.linkemu")


def _cleanup_handover(rig: Rig) -> None:
    if rig.net:
        rig.net.teardown()


async def _crash(rig: Rig, rng: random.Random, report: Report) -> None:
    for _ in range(rig.args.crashes):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        rig.kill9_agent()
        await asyncio.sleep(1.0)  # systemd's RestartSec=2, shortened
        rig.start_agent()


async def _reboot(rig: Rig, rng: random.Random, report: Report) -> None:
    stops, killed = [], 0
    for _ in range(rig.args.reboots):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        t0 = time.monotonic()
        await asyncio.to_thread(rig.kill_agent_group, signal.SIGTERM, STOP_TIMEOUT_S)
        stops.append(time.monotonic() - t0)
        killed += rig.agent.returncode == -signal.SIGKILL
        rig.emu.blackout(rig.args.boot_s)  # the modem is down until the vehicle is up again
        await asyncio.sleep(rig.args.boot_s)
        rig.start_agent()
    report.detail["reboots"] = len(stops)
    report.detail["longest stop"] = f"{max(stops):.1f} s" if stops else "-"
    report.detail[f"SIGKILLed after {STOP_TIMEOUT_S:.0f} s"] = killed


def _prepare_power_cut(rig: Rig) -> None:
    rig.log_level = "debug"  # the agent's line per commit: what it claimed as accepted
    rig.shadow = rig.dir / "durable"
    lib = powercut.build(rig.dir / "lib")
    rig.agent_env = powercut.environ(lib, rig.journal_dir, rig.shadow)


async def _power_cut(rig: Rig, rng: random.Random, report: Report) -> None:
    pages = 0
    for _ in range(rig.args.cuts):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        rig.kill_agent_group(signal.SIGKILL)
        pages += powercut.cut(rig.journal_dir, rig.shadow)
        rig.emu.blackout(rig.args.boot_s)
        await asyncio.sleep(rig.args.boot_s)
        rig.start_agent()
    report.detail["power cuts"] = rig.args.cuts
    report.detail["journal pages not fsynced, discarded"] = pages
    report.detail["emulated"] = ("kill -9 of the agent's process group, then its journal files "
                                 "rolled back to their last fsync (hil/powercut.py)")


def _prepare_disk_full(rig: Rig) -> None:
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={rig.args.fs_mb}m", "tmpfs",
                          str(rig.journal_dir)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"disk-full needs root to mount a small tmpfs: {res.stderr.strip()}")
    rig.mounted = True


def _fill(path, fs_mb: int) -> None:
    """Write until the file system says ENOSPC (at most its size); keep what was written."""
    with open(path, "ab", buffering=0) as f:
        for _ in range(fs_mb * 1024 * 1024 // FILL_CHUNK + 1):
            try:
                f.write(b"\0" * FILL_CHUNK)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


async def _disk_full(rig: Rig, rng: random.Random, report: Report) -> float:
    filler = rig.journal_dir / "filler"
    rig.emu.blackout(rig.args.full_s)  # a dead zone: the backlog must grow on a full disk
    deadline = time.monotonic() + rig.args.full_s
    states, held = set(), 0
    degraded_at = None
    while time.monotonic() < deadline:
        _fill(filler, rig.args.fs_mb)  # like a runaway log: takes whatever space appears
        snap = rig.status() or {}
        journal = snap.get("journal", {})
        states.add(journal.get("state", "?"))
        held = max(held, journal.get("held_in_memory", 0))
        if degraded_at is None and journal.get("state") == "degraded":
            degraded_at = time.monotonic()
        await asyncio.sleep(POLL_S)
    filler.unlink()
    back = time.monotonic()
    journal = (rig.status() or {}).get("journal", {})
    # what waits when the space returns: in the journal, and held in memory
    report.backlog_after = journal.get("backlog", 0) + journal.get("held_in_memory", 0)
    ok = await until(lambda: (rig.status() or {}).get("journal", {}).get("state") == "ok",
                     RECOVER_LIMIT_S, "the journal to leave degraded", quiet=True)
    report.detail["journal states seen (agent's status)"] = ", ".join(sorted(states))
    report.detail["degraded after the disk filled"] = (
        "-" if degraded_at is None else f"{degraded_at - (deadline - rig.args.full_s):.1f} s")
    report.detail["most readings held in memory"] = held
    report.detail["journal writable again after"] = (
        f"{time.monotonic() - back:.1f} s" if ok else "never")
    report.detail["emulated"] = f"a {rig.args.fs_mb} MB tmpfs under the journal, filled to ENOSPC"
    rig.disk_full_ok = ok and "degraded" in states
    return back  # recovery counts from the space's return


def _cleanup_disk_full(rig: Rig) -> None:
    if getattr(rig, "mounted", False):
        subprocess.run(["umount", "-l", str(rig.journal_dir)], capture_output=True)


async def _nothing(rig: Rig, rng: random.Random, report: Report) -> None:
    return None


DISTURB = {"drive": _nothing, "tunnel": _tunnel, "handover": _handover, "crash": _crash,
           "reboot": _reboot, "power-cut": _power_cut, "disk-full": _disk_full}
PREPARE = {"handover": _prepare_handover, "power-cut": _prepare_power_cut,
           "disk-full": _prepare_disk_full}
CLEANUP = {"handover": _cleanup_handover, "disk-full": _cleanup_disk_full}


async def run(scenario: str, args, workdir) -> Report:
    rig = Rig(workdir, args)
    report = Report(scenario)
    rng = random.Random(args.seed)
    try:
        PREPARE.get(scenario, lambda r: None)(rig)
        await rig.start()
        await until(lambda: rig.stored()[1] > 0, STARTUP_S, "the first stored reading")
        since = await DISTURB[scenario](rig, rng, report) or time.monotonic()
        report.backlog_after = report.backlog_after or max(0, rig.journal()[0])
        # recovered: the agent is connected again and the backlog is down to what one second
        # of live readings leaves in flight
        live = max(2, int(args.rate) * 2)

        def recovered() -> bool:
            link = (rig.status() or {}).get("link", {})
            return link.get("state") == "connected" and 0 <= rig.journal()[0] <= live
        if await until(recovered, RECOVER_LIMIT_S, "the backlog to drain", quiet=True):
            report.recover_s = time.monotonic() - since
        if scenario == "handover":
            link = (rig.status() or {}).get("link", {})
            report.detail["agent connections (1: every change migrated)"] = link.get("connects")
            if rig.net:  # after the recovery: the last change's migration is logged by now
                log = (rig.dir / "agent.log").read_text(errors="replace")
                report.detail["migrations the agent logged"] = log.count("connection migrated to")
        await until(rig.gps_done, RECOVER_LIMIT_S + args.fixes / args.rate, "the GPS to end")
        await asyncio.sleep(1.0)  # the last fix's commit

        def drained() -> bool:
            waiting, accepted = rig.journal()
            return waiting == 0 and rig.stored()[1] >= accepted
        if not await until(drained, RECOVER_LIMIT_S, "the backlog to be stored", quiet=True):
            report.recover_s = None
        _account(rig, report, scenario)
    finally:
        rig.stop()
        CLEANUP.get(scenario, lambda r: None)(rig)
    return report


def _account(rig: Rig, report: Report, scenario: str) -> None:
    """Counts against the simulator's record and the backend's database, never the agent's."""
    sent = rig.sent()
    positions, distinct, dups = rig.stored()
    stored = set(positions)
    report.sent = len(sent)
    # a power cut that lost a commit would roll next_seq back and hide it: count what the
    # agent said it accepted too (its DEBUG line per commit)
    claimed = rig.claimed() if scenario == "power-cut" else 0
    report.accepted = max(rig.journal()[1], claimed)
    if scenario == "power-cut":  # 0 would mean the agent's commit line changed: not counted
        report.detail["accepted as the agent logged it"] = claimed
    report.stored = distinct
    report.lost = max(0, report.accepted - distinct)
    report.duplicated = dups + (len(positions) - len(stored))
    report.unread = sum(1 for fix in set(sent) if fix not in stored)
    report.ok = (report.lost == 0 and report.duplicated == 0 and report.sent > 0
                 and report.recover_s is not None
                 and (report.unread == 0 or scenario in AGENT_DIES)
                 and getattr(rig, "disk_full_ok", True)
                 and (scenario != "power-cut" or claimed > 0))
    if scenario == "handover":
        report.ok = report.ok and report.detail.get(
            "agent connections (1: every change migrated)") == 1
