"""socketcan on a real vcan0 (kernel filters, interface down/up, unplug/replug).

Runs tests/can/vm_vcan_check.py directly where this kernel can create vcan interfaces, or else
inside a Debian VM when FLEET_CAN_VM_ROOTFS names a root file system built as docs/can.md
describes (this host's kernel has no vcan). Skipped when neither is available.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
CHECK = Path(__file__).resolve().parent / "vm_vcan_check.py"
VM_BOOT_TIMEOUT_S = 420  # measured ~40 s boot + ~60 s check; software emulation varies a lot
VM_LOG = "/var/log/fleet-can-check.log"
# what the check imports, copied next to the code in the VM (python3 there has no pip packages)
VM_PACKAGES = ("can", "cantools", "bitstruct", "textparser", "argparse_addons", "crccheck",
               "wrapt", "packaging", "typing_extensions")

pytestmark = pytest.mark.slow


def host_has_vcan() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = subprocess.run(["ip", "link", "add", "fleetcanprobe", "type", "vcan"],
                           capture_output=True)
    if probe.returncode != 0:
        return False
    subprocess.run(["ip", "link", "delete", "fleetcanprobe"], capture_output=True)
    return True


def parse_result(text: str) -> dict:
    for line in text.splitlines():
        if "VCAN-RESULT " in line:
            return json.loads(line.split("VCAN-RESULT ", 1)[1])
    raise AssertionError("no VCAN-RESULT line in:\n" + text[-3000:])


def assert_result(res: dict) -> None:
    for key in ("up", "receiving", "filtered_in_kernel", "values_ok", "down_seen",
                "resumed_after_up", "open_fails_while_gone", "resumed_after_recreate"):
        assert res[key], (key, res)
    assert set(res["values"]) == {"EngSpeed", "WheelBasedVehicleSpeed"}
    assert res["status"]["unknown_id"] == 0 and res["status"]["unselected"] == 0
    assert res["status"]["opens"] >= 3


def copy_module(name: str, site: Path, dest: Path) -> None:
    src = site / name
    if src.is_dir():
        shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(site / f"{name}.py", dest / f"{name}.py")


def run_in_vm(rootfs: Path, tmp_path: Path) -> str:
    """Put the code and a one-shot unit into the VM root, make a disk image, boot once."""
    import can

    site = Path(can.__file__).resolve().parent.parent
    opt = rootfs / "opt" / "fleet-can"
    if opt.exists():
        shutil.rmtree(opt)
    (opt / "site").mkdir(parents=True)
    for name in VM_PACKAGES:
        copy_module(name, site, opt / "site")
    shutil.copytree(REPO / "agent", opt / "src" / "agent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (opt / "src" / "tests" / "can").mkdir(parents=True)
    shutil.copy(CHECK, opt / "src" / "tests" / "can" / CHECK.name)
    unit = rootfs / "etc" / "systemd" / "system" / "fleet-can-check.service"
    unit.write_text(
        "[Unit]\nDescription=fleet-agent vcan check\nAfter=multi-user.target\n\n"
        "[Service]\nType=oneshot\nEnvironment=PYTHONPATH=/opt/fleet-can/site\n"
        "ExecStart=/bin/sh -c 'python3 /opt/fleet-can/src/tests/can/vm_vcan_check.py "
        f">{VM_LOG} 2>&1; sync; systemctl --no-block poweroff'\n\n"
        "[Install]\nWantedBy=multi-user.target\n")
    wants = rootfs / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit.name
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/fleet-can-check.service")
    (rootfs / "etc" / "fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
    disk = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "2G", str(disk)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(rootfs), str(disk)], check=True,
                   capture_output=True, timeout=300)
    kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((rootfs / "boot").glob("initrd.img-*"))[-1]
    serial = tmp_path / "serial.log"
    (rootfs / VM_LOG.lstrip("/")).unlink(missing_ok=True)
    subprocess.run(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2", "-nic", "none",
         "-display", "none", "-no-reboot", "-serial", f"file:{serial}", "-kernel", str(kernel),
         "-initrd", str(initrd),
         "-drive", f"file={disk},format=raw,if=virtio,cache=writethrough",
         "-append", "root=/dev/vda rw console=ttyS0 quiet"],
        check=False, capture_output=True, timeout=VM_BOOT_TIMEOUT_S)
    # the check's output, read back from the powered-off disk (the serial line has a getty)
    out = subprocess.run(["debugfs", "-R", f"cat {VM_LOG}", str(disk)], capture_output=True,
                         text=True, timeout=60)
    return out.stdout + "\n--- serial ---\n" + serial.read_text(errors="replace")


@pytest.mark.timeout(VM_BOOT_TIMEOUT_S + 150)
def test_socketcan_on_vcan(tmp_path):
    if host_has_vcan():
        r = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True,
                           timeout=180)
        assert_result(parse_result(r.stdout))
        return
    rootfs = os.environ.get("FLEET_CAN_VM_ROOTFS")
    if not rootfs or not (Path(rootfs) / "boot").is_dir() or os.geteuid() != 0 or not all(
            shutil.which(tool) for tool in ("qemu-system-x86_64", "mkfs.ext4", "debugfs")):
        pytest.skip("no vcan in this kernel and no FLEET_CAN_VM_ROOTFS for the Debian VM")
    assert_result(parse_result(run_in_vm(Path(rootfs), tmp_path)))
