"""A small Debian VM under qemu (software emulation) for power-cut and hardware-in-the-loop tests.

One cached *base image* (debootstrap once, ~80 s; reused by every test) boots a oneshot systemd
service, `fleet-hil.service`, which mounts a second disk, the *payload disk* (`/dev/vdb`,
made per test from a host directory), runs its `run` script with stdout on the serial console,
and powers off. Tests read the console, and may hard-reset the guest through the qemu monitor
(`system_reset`, the same as pulling the power) or kill qemu. The payload disk survives resets,
so the guest script resumes on each boot.

A second serial port (guest `/dev/ttyS1`, a real 16550 UART to the guest's kernel) can be backed
by a host unix socket: `Vm(..., uart_socket=PATH)`. The host connects to PATH once qemu runs
(`Vm.connect_uart()`) and whatever it writes arrives on the guest's ttyS1, e.g. NMEA for a GPS
receiver (tests/system/test_deb_vm.py). Still no network device: the VM keeps `-nic none`.

Cache: `$FLEET_VM_CACHE`, else /var/tmp/fleet-agent-vm/ (outside any checkout: every clone on
this machine shares it; entries are named by a hash of what they are built from, and built under
a machine-wide lock).
Needs the Debian packages `debootstrap` and `qemu-system-x86`, and root for debootstrap.

    python -m hil.vm build        # build the base image now (tests do it on first use)
    python -m hil.vm smoke [fast] # boot once (systemd, or fast init) and time it
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
# what a test guest needs: systemd as init, a kernel, Python with the agent's one non-stdlib
# dependency (cbor2), SQLite's CLI for debugging, CAN tools for the HIL rig, and what the
# fleet-agent .deb depends on beyond python3 (adduser, which minbase leaves out; python3-systemd)
PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "kmod", "iproute2", "can-utils",
    "python3", "python3-cbor2", "python3-systemd", "sqlite3", "adduser",
)
BASE_DISK_SIZE = "2G"
# bump when the guest-side files below change, so the cached image is rebuilt
BASE_LAYOUT_VERSION = 5
# What the guest's initramfs loads: only what mounts its root file system (virtio PCI and
# block, ext4). Debian's generic one (MODULES=most: 35 MB, ~750 modules, the floppy, IDE and
# CD-ROM drivers probed by udev) took a third of each boot under emulation: the power-cut
# payload's first accepted reading came after 63 and 43 s against 90 and 69 s with it
# (2026-12-07, interleaved, load 7-9). The root's own udev loads the other modules.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
SERIAL_PREFIX = "HIL:"  # guest lines meant for the host start with this

_RUNNER = """#!/bin/sh
# fleet-hil runner: mount the payload disk, run its script on the serial console, power off
mkdir -p /hil
if ! mount -o data=ordered /dev/vdb /hil; then
    echo "HIL:ERROR no payload disk" > /dev/ttyS0
    systemctl poweroff
    exit 1
fi
cd /hil
echo "HIL:BOOT" > /dev/ttyS0
./run > /dev/ttyS0 2>&1
echo "HIL:EXIT $?" > /dev/ttyS0
cd /
umount /hil
sync
systemctl poweroff
"""

# Both fast inits end alike: run the payload disk's `run`, its output and exit status on the
# serial console, then power off
_RUN_PAYLOAD = """if mount -o data=ordered /dev/vdb /hil; then
    echo "HIL:BOOT" > /dev/ttyS0
    cd /hil && ./run > /dev/ttyS0 2>&1
    echo "HIL:EXIT $?" > /dev/ttyS0
    cd /
    umount /hil
else
    echo "HIL:ERROR no payload disk" > /dev/ttyS0
fi
sync
echo o > /proc/sysrq-trigger
sleep 30
"""

# PID 1 for quick boots (kernel `init=`): no systemd, ~2x faster under TCG; for tests that
# need only the kernel, a file system and Python (power cuts), not services
_FAST_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /hil
""" + _RUN_PAYLOAD

# PID 1 for restored boots (`Vm(restore=True)`): the root stays read-only (a restored machine
# must find its root disk as its saved memory left it), /tmp is a tmpfs, and the script waits
# for the payload disk, which the host plugs in only after it has restored the saved machine:
# the kernel has never read that disk before, so nothing of it is cached from an earlier boot.
# The clock is set from the RTC (the saved machine's clock is the saving's).
_RESTORE_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
echo "HIL:WAITING" > /dev/ttyS0
n=0
while [ ! -b /dev/vdb ] && [ $n -lt 36000 ]; do
    n=$((n + 1))
    sleep 0.05
done
date -s "@$(cat /sys/class/rtc/rtc0/since_epoch)" > /dev/null
""" + _RUN_PAYLOAD

_SERVICE = """[Unit]
Description=fleet-agent HIL test runner (payload disk /dev/vdb)
After=local-fs.target systemd-udev-settle.service
DefaultDependencies=yes

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/fleet-hil-run
StandardOutput=journal
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""


class VmUnavailable(RuntimeError):
    """A tool the VM needs is missing; the message says which package installs it."""


def cache_dir() -> Path:
    path = Path(os.environ.get("FLEET_VM_CACHE") or "/var/tmp/fleet-agent-vm")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_tools() -> None:
    missing = [
        pkg for tool, pkg in (
            ("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"),
            ("mkfs.ext4", "e2fsprogs"),
        )
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")
    ]
    if missing:
        raise VmUnavailable(
            "the VM test needs Debian packages " + " ".join(missing)
            + " (apt-get install -y " + " ".join(missing) + "; `make test` installs them)"
        )


@dataclass(frozen=True)
class BaseImage:
    disk: Path
    kernel: Path
    initrd: Path


def _rootfs_key() -> str:
    return hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]


def _image_key() -> str:
    text = (f"{_rootfs_key()} {BASE_LAYOUT_VERSION} {_RUNNER} {_SERVICE} {_FAST_INIT} "
            f"{_RESTORE_INIT} {' '.join(INITRAMFS_MODULES)}")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _sbin(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"


def _ensure_rootfs(log) -> Path:
    """debootstrap once (about 1-2 minutes); kept, so a layout change costs only a mkfs."""
    rootfs = cache_dir() / f"rootfs-{_rootfs_key()}"
    if (rootfs / ".fleet-ready").exists():
        return rootfs
    if os.geteuid() != 0:
        raise VmUnavailable("building the VM root file system needs root (debootstrap)")
    shutil.rmtree(rootfs, ignore_errors=True)
    log(f"debootstrap Debian {SUITE} into {rootfs} (once, about 1-2 minutes)")
    t0 = time.monotonic()
    cmd = [_sbin("debootstrap"), "--variant=minbase", "--include=" + ",".join(PACKAGES),
           SUITE, str(rootfs)]
    mirror = os.environ.get("FLEET_VM_MIRROR")
    if mirror:
        cmd.append(mirror)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    subprocess.run(["chroot", str(rootfs), "passwd", "-d", "root"], check=True,
                   capture_output=True)
    (rootfs / ".fleet-ready").write_text("")
    log(f"root file system ready in {time.monotonic() - t0:.0f} s")
    return rootfs


def ensure_base(log=print) -> BaseImage:
    """Return the cached base image, building what is missing (needs root the first time)."""
    check_tools()
    root = cache_dir() / f"base-{_image_key()}"
    image = BaseImage(root / "disk.img", root / "vmlinuz", root / "initrd.img")
    if (root / "ready").exists():
        return image
    import fcntl

    with open(cache_dir() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run on this machine may be building it
        if not (root / "ready").exists():
            _build_base(root, image, log)
    return image


def _build_base(root: Path, image: BaseImage, log) -> None:
    """The base image from the (cached) root file system: runner, service, kernel, ext4 disk."""
    rootfs = _ensure_rootfs(log)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (rootfs / "etc/fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
    (rootfs / "etc/hostname").write_text("fleet-hil\n")
    for name, text in (("fleet-hil-run", _RUNNER), ("fleet-hil-init", _FAST_INIT),
                       ("fleet-hil-restore-init", _RESTORE_INIT)):
        script = rootfs / "usr/local/sbin" / name
        script.write_text(text)
        script.chmod(0o755)
    (rootfs / "hil").mkdir(exist_ok=True)  # the payload's mount point on a read-only root
    (rootfs / "etc/systemd/system/fleet-hil.service").write_text(_SERVICE)
    # the serial console belongs to the test: a getty there would hang the line up (vhangup)
    # while the runner writes to it, and every later write would fail with EIO
    getty = rootfs / "etc/systemd/system/serial-getty@ttyS0.service"
    if not getty.is_symlink():
        getty.symlink_to("/dev/null")
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "fleet-hil.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/fleet-hil.service")
    kernel = sorted(glob.glob(str(rootfs / "boot/vmlinuz-*")))[-1]
    shutil.copy(kernel, image.kernel)
    _small_initrd(rootfs, Path(kernel).name.removeprefix("vmlinuz-"), image.initrd)
    subprocess.run(["truncate", "-s", BASE_DISK_SIZE, str(image.disk)], check=True)
    subprocess.run([_sbin("mkfs.ext4"), "-q", "-F", "-d", str(rootfs), str(image.disk)],
                   check=True, capture_output=True)
    (root / "ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))


def _small_initrd(rootfs: Path, kernel_version: str, out: Path) -> None:
    """An initramfs with only `INITRAMFS_MODULES` (mkinitramfs inside the root file system,
    with a copy of its configuration that says MODULES=list)."""
    conf = rootfs / "tmp/fleet-hil-initramfs"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(rootfs / "etc/initramfs-tools", conf)
    settings = conf / "initramfs.conf"
    settings.write_text(re.sub(r"(?m)^MODULES=.*$", "MODULES=list", settings.read_text()))
    with open(conf / "modules", "a") as f:
        f.write("\n".join(INITRAMFS_MODULES) + "\n")
    try:
        subprocess.run(["chroot", str(rootfs), "mkinitramfs", "-d", "/tmp/fleet-hil-initramfs",
                        "-o", "/tmp/fleet-hil-initramfs/initrd.img", kernel_version],
                       check=True, capture_output=True)
        shutil.copy(conf / "initrd.img", out)
    finally:
        shutil.rmtree(conf, ignore_errors=True)


def make_payload_disk(src_dir: Path, out: Path, size_mb: int = 64) -> Path:
    """An ext4 image holding `src_dir` (with an executable `run`) for the guest's /hil."""
    if not (src_dir / "run").exists():
        raise ValueError(f"{src_dir} has no run script")
    out.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(out)], check=True)
    subprocess.run([_sbin("mkfs.ext4"), "-q", "-F", "-d", str(src_dir), str(out)],
                   check=True, capture_output=True)
    return out


MONITOR_PROMPT = b"(qemu) "


class Vm:
    """One qemu process: start, read the serial console, hard-reset, stop."""

    def __init__(self, base: BaseImage, payload: Path, workdir: Path, *,
                 memory_mb: int = 512, cpus: int = 1, fast_init: bool = False,
                 uart_socket: Path | None = None, cpu_model: str | None = None,
                 restore: bool = False):
        self.base = base
        self.payload = payload
        self.workdir = workdir
        self.serial_log = workdir / "serial.log"
        self.monitor_path = workdir / "monitor.sock"
        self.memory_mb = memory_mb
        self.cpus = cpus
        # fast_init: boot straight into the payload (no systemd); else fleet-hil.service
        self.fast_init = fast_init
        # host end (unix socket, qemu listens) of the guest's second UART, /dev/ttyS1
        self.uart_socket = uart_socket
        # qemu's default model (qemu64) is older than x86-64-v2: binary wheels built for it
        # (numpy >= 2.4, which shapely needs) die with SIGILL; "max" is all TCG can emulate
        self.cpu_model = cpu_model
        # restore: `start()` boots once to the restore init's wait for the payload disk and
        # saves the machine there (`state_path`); that boot and every `power_cut()` then start
        # qemu from the saved state and plug the payload disk in (see `start`)
        self.restore = restore
        self.state_path = workdir / "machine.state"
        self._incoming = False  # the next qemu starts from state_path
        self.saved_after_cpu_s = 0.0  # qemu's CPU seconds from its start to the saved point
        self.proc: subprocess.Popen | None = None
        self._pos = 0
        self._partial = ""

    def command(self) -> list[str]:
        uart = []
        if self.uart_socket is not None:
            # wait=off: the guest boots without a peer; bytes it sends before one connects drop
            uart = ["-chardev", f"socket,id=uart1,path={self.uart_socket},server=on,wait=off",
                    "-serial", "chardev:uart1"]
        if self.restore:  # plugged in after the restore (`_restore`); read-only root
            payload, root, init = [], "ro", " init=/usr/local/sbin/fleet-hil-restore-init"
        else:
            # the payload disk carries the test's data: flushes reach the host file honestly
            payload = ["-drive", f"{self._payload_drive()},if=virtio"]
            root = "rw"
            init = " init=/usr/local/sbin/fleet-hil-init" if self.fast_init else ""
        return [
            "qemu-system-x86_64", "-accel", "tcg", "-m", str(self.memory_mb),
            *(["-cpu", self.cpu_model] if self.cpu_model else []),
            "-smp", str(self.cpus), "-nic", "none", "-display", "none", "-no-user-config",
            # restore: each boot's qemu appends to what the one before it wrote
            *(["-chardev", f"file,id=console,path={self.serial_log},append=on",
                "-serial", "chardev:console"] if self.restore
              else ["-serial", f"file:{self.serial_log}"]),
            *uart,
            "-monitor", f"unix:{self.monitor_path},server,nowait",
            "-kernel", str(self.base.kernel), "-initrd", str(self.base.initrd),
            # the root disk is never changed: writes go to a throw-away snapshot
            "-drive", f"file={self.base.disk},format=raw,if=virtio,snapshot=on",
            *payload,
            # mitigations=off: the guest runs only the test's code, with no network, and the
            # kernel's Spectre defences (retpolines) cost emulated time: the backend .deb's
            # 10,000 files unpacked in 32 s against 77 s without it (2026-12-07, one run each,
            # the host at load 3 against 5.5, so part of it is the load)
            "-append", f"root=/dev/vda {root} console=ttyS0 quiet panic=-1 mitigations=off"
            + init,
            *(["-incoming", f"exec:cat {shlex.quote(str(self.state_path))}"]
              if self._incoming else []),
        ]

    def _payload_drive(self) -> str:
        return f"file={self.payload},format=raw,cache=writethrough"

    def start(self, save_cpu_s: float = 300.0) -> None:
        """Start qemu. With `restore`, first boot to the restore init's wait (it prints
        HIL:WAITING) and save the machine there, then start from the saved state and plug the
        payload disk in: a boot that has the kernel's start behind it already. The saving
        boot may use `save_cpu_s` seconds of qemu's CPU (about 20 s on a quiet machine):
        a budget of emulated work, which a loaded host stretches in time but not in amount."""
        self.serial_log.write_bytes(b"")
        self._pos = 0
        self._partial = ""
        self._incoming = False
        self._spawn()
        if self.restore:
            self._save(save_cpu_s)
            self._restore()

    def _spawn(self) -> None:
        self.monitor_path.unlink(missing_ok=True)
        if self.uart_socket is not None:
            self.uart_socket.unlink(missing_ok=True)
        with open(self.workdir / "qemu.stderr", "ab") as stderr:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=stderr)

    def cpu_seconds(self) -> float:
        """CPU time qemu has used (all its threads, user + system), 0 if it is not running:
        the emulated work done, whatever the host's load."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _save(self, cpu_budget_s: float) -> None:
        """Wait for HIL:WAITING, then stop the guest and write its state to `state_path`."""
        seen: list[str] = []
        while "WAITING" not in seen:
            if not self.alive():
                raise RuntimeError(f"qemu exited before the restore point:\n{serial_tail(self)}")
            if self.cpu_seconds() > cpu_budget_s:
                raise TimeoutError(f"no restore point within {cpu_budget_s:.0f} s of qemu's "
                                   f"CPU:\n{serial_tail(self)}")
            time.sleep(0.1)
            seen += self.lines()
        self.monitor("stop")
        self.state_path.unlink(missing_ok=True)
        # the state is whole once its name appears (the writer renames it when done)
        part = shlex.quote(f"{self.state_path}.part")
        self.monitor(f'migrate "exec:cat > {part} && mv {part} '
                     f'{shlex.quote(str(self.state_path))}"')
        # a stopped guest's 512 MB, mostly zero pages: ~1 s
        deadline = time.monotonic() + 300.0
        while not self.state_path.exists():
            status = self.monitor("info migrate")
            if "failed" in status or not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"saving the machine failed: {status}")
            time.sleep(0.1)
        self.saved_after_cpu_s = self.cpu_seconds()
        self.kill()

    def _restore(self) -> None:
        """A new qemu from the saved state, running, with the payload disk plugged in."""
        self._incoming = True
        self._spawn()
        # the machine was saved stopped, so it comes back stopped ("paused (inmigrate)" while
        # the state is read: ~1 s)
        deadline = time.monotonic() + 300.0
        while (status := self.monitor("info status", 120.0).strip().split("\n")[-1].strip()
               ) != "VM status: paused":
            if not self.alive() or "running" in status or time.monotonic() > deadline:
                raise RuntimeError(f"restoring the machine: {status!r}\n{serial_tail(self)}")
            time.sleep(0.05)
        self.monitor(f"drive_add 0 {self._payload_drive()},if=none,id=payload")
        self.monitor("device_add virtio-blk-pci,drive=payload,id=payload-disk")
        self.monitor("cont")

    def power_cut(self) -> None:
        """Power cut of a `restore` machine: qemu is killed (its memory, so the guest's page
        cache and everything the guest had not written, is gone; the payload disk keeps what
        qemu had written to it), then the machine boots again from the saved state. What
        the dying guest printed stays readable through `lines()`."""
        assert self.restore, "power_cut() is for Vm(restore=True); reset() otherwise"
        self.kill()
        self._restore()

    def lines(self) -> list[str]:
        """New complete serial lines that start with SERIAL_PREFIX (prefix removed)."""
        with open(self.serial_log, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        self._pos += len(data)
        text = self._partial + data.decode("utf-8", "replace")
        *complete, self._partial = text.split("\n")
        out = []
        for line in complete:
            # a reset can cut a line short and the next boot's output continue it: every
            # prefixed piece is its own line (a cut-short piece is the reader's to reject)
            out.extend(piece.strip() for piece in line.split(SERIAL_PREFIX)[1:])
        return out

    def monitor(self, command: str, timeout: float = 30.0) -> str:
        """Run one HMP command and return its output once qemu has executed it.

        The human monitor prints a prompt when it is ready, echoes the command, runs it and
        prints the next prompt: waiting for that second prompt is the receipt. (Closing the
        socket right after sending may lose the command on a loaded host: qemu can see the
        hang-up before it reads the line.)
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(self.monitor_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with s:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            self._read_until_prompt(s, deadline)
            s.sendall(command.encode() + b"\n")
            return self._read_until_prompt(s, deadline)

    @staticmethod
    def _read_until_prompt(s: socket.socket, deadline: float) -> str:
        buf = b""
        while not buf.endswith(MONITOR_PROMPT):
            if time.monotonic() > deadline:
                raise TimeoutError(f"qemu monitor did not answer: {buf[-200:]!r}")
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError(f"qemu monitor closed: {buf[-200:]!r}")
            buf += chunk
        return buf[:-len(MONITOR_PROMPT)].decode("utf-8", "replace")

    def connect_uart(self, timeout: float = 30.0) -> socket.socket:
        """A stream socket to the guest's /dev/ttyS1 (Vm(uart_socket=...)); the caller closes it.

        Bytes written to it are received by the guest's UART at once (qemu does not pace them
        to the baud rate). Like a real receiver the host cannot see whether anything reads the
        port: bytes sent before the guest program opens it may be lost (opening flushes the
        input) or arrive late, so wait for the guest to say it is reading.
        """
        if self.uart_socket is None:
            raise ValueError("this Vm has no uart_socket")
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.uart_socket))
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline or not self.alive():
                    raise
                time.sleep(0.2)

    def reset(self) -> None:
        """Hard reset, like a power cut: the guest's caches are gone, the disk stays."""
        self.monitor("system_reset")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Vm:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def serial_tail(vm: Vm, n: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return vm.serial_log.read_text("utf-8", "replace")[-n:]
    return ""


def _smoke(fast_init: bool) -> int:
    """Build the base image and boot it once with a payload that prints and exits."""
    base = ensure_base()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / "payload"
        src.mkdir()
        (src / "run").write_text("#!/bin/sh\necho HIL:HELLO $(uname -r) $(python3 -V)\n")
        (src / "run").chmod(0o755)
        payload = make_payload_disk(src, tmpdir / "payload.img", 16)
        t0 = time.monotonic()
        with Vm(base, payload, tmpdir, fast_init=fast_init) as vm:
            code = vm.wait_exit(180)
            seen = vm.lines()
        print(f"boot to power-off: {time.monotonic() - t0:.1f} s, exit {code}, lines {seen}")
        return 0 if any(re.match(r"HELLO ", line) for line in seen) else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        ensure_base()
        sys.exit(0)
    if sys.argv[1:2] == ["smoke"]:
        sys.exit(_smoke(sys.argv[2:] == ["fast"]))
    print(__doc__)
    sys.exit(2)
