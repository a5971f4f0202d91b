"""An arm64 (or armhf) Debian 12 chroot under qemu-user-static: build and smoke-test the .deb
for a Raspberry Pi without one.

The root file system is built once with debootstrap (minbase, Python and dh-virtualenv: no
compiler, no debhelper) and cached in `$FLEET_CHROOT_CACHE`, else /var/tmp/fleet-agent-chroot/
(never in git). The .deb is built by the same debian/rules as on amd64, cross
(`dpkg-buildpackage -a arm64` on the host), with only dh_virtualenv run inside the chroot (the
virtualenv must be made by the target's Python). Nothing slow runs under emulation: the host's
pip downloads the aarch64 wheels of every dependency once (`--only-binary=:all:`, cached next
to the root), and pip inside installs only those (PIP_NO_INDEX, PIP_ONLY_BINARY: a missing
wheel fails the build instead of compiling); the web bundle is built on the host; systemd's
Python bindings come from Debian (python3-systemd).

    python -m hil.chroot build [arm64|armhf]   # the cached root (tests do it on first use)
    python -m hil.chroot deb [arm64|armhf]     # build the .deb from the git tree into run/
    python -m hil.chroot shell [arm64|armhf]   # a shell in it

Needs root, debootstrap and qemu-user-static (`make deps-test`); the emulator is registered
with binfmt_misc here if it is not yet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
QEMU_NAMES = {"arm64": "qemu-aarch64", "armhf": "qemu-arm"}
# what runs in the root: dh_virtualenv and the target's Python (debhelper and dpkg-dev run on
# the host; in the root they would pull in perl's and gcc's packages, all configured under
# emulation), the package's Depends, and sqlite3 for the smoke test
PACKAGES = ("python3", "python3-venv", "python3-systemd", "dh-virtualenv", "adduser", "sqlite3")
# bump when what ensure_root() does to the root changes (PACKAGES and SUITE are in the key
# already), so a cached root is rebuilt
LAYOUT_VERSION = 3
# the chroot's interpreter (Debian 12): the wheels downloaded on the host are for this one
PYTHON_VERSION = "3.11"
# pip's platform tags per Debian architecture, newest first: Debian 12 has glibc 2.36, so every
# manylinux_2_N up to 2_36 (pyvroom 1.15's aarch64 wheel needs one above 2_28, for one; the
# lock, hil/lock.py, is resolved for manylinux_2_36)
WHEEL_PLATFORMS = {
    "arm64": (*(f"manylinux_2_{n}_aarch64" for n in range(36, 16, -1)), "manylinux2014_aarch64",
              "linux_aarch64"),
    "armhf": ("manylinux_2_31_armv7l", "manylinux_2_28_armv7l", "manylinux_2_17_armv7l",
              "manylinux2014_armv7l", "linux_armv7l"),
}
# the agent package's dependencies, pinned with hashes, the build backend included
# (hil/lock.py): the Pi gets the fleet-agent package only (build profile below)
RUNTIME_LOCK = REPO / "requirements" / "agent.lock"
# debian/control's profile that leaves the fleet-backend package out of the build
AGENT_ONLY_PROFILE = "pkg.fleet-agent.agent-only"


class ChrootUnavailable(RuntimeError):
    """This machine cannot run the foreign-architecture chroot (the message says why)."""


def cache_dir() -> Path:
    """Outside any checkout, so every clone on this machine shares it."""
    return Path(os.environ.get("FLEET_CHROOT_CACHE") or "/var/tmp/fleet-agent-chroot")


def root_key(arch: str) -> str:
    """The cached root's name: a hash of everything it is built from."""
    import hashlib

    text = " ".join([SUITE, arch, str(LAYOUT_VERSION), *PACKAGES])
    return f"{SUITE}-{arch}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def locked(arch: str):
    """Hold the machine-wide lock on the `arch` root: builds run in it (build/, the installed
    .deb), so two test runs on one machine take turns instead of writing in each other's."""
    import fcntl

    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def register_emulator(arch: str) -> None:
    """binfmt_misc: let the kernel run `arch` binaries through qemu-user-static."""
    name = QEMU_NAMES[arch]
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=False)
    if (binfmt / name).exists():
        return
    conf = Path(f"/usr/lib/binfmt.d/{name}.conf")
    if not conf.exists():
        raise ChrootUnavailable(f"{conf} missing: apt-get install qemu-user-static")
    try:
        (binfmt / "register").write_text(conf.read_text())
    except OSError as exc:
        raise ChrootUnavailable(f"cannot register {name} with binfmt_misc: {exc}") from None


def ensure_root(arch: str = "arm64", log=print) -> Path:
    """The cached chroot for `arch`, built if missing."""
    if os.geteuid() != 0:
        raise ChrootUnavailable("needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "chroot"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise ChrootUnavailable(f"{tool} missing: `make deps-test` installs it")
    register_emulator(arch)
    root = cache_dir() / root_key(arch)
    stamp = root / ".fleet-chroot-ready"
    if stamp.exists():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {arch} {SUITE} into {tmp} (a few minutes under emulation)")
    out = subprocess.run(["debootstrap", f"--arch={arch}", "--variant=minbase",
                          f"--include={','.join(PACKAGES)}", SUITE, str(tmp)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ChrootUnavailable(f"debootstrap failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
    # a chroot has no init: keep package scripts from starting services
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (tmp / ".fleet-chroot-ready").write_text(f"{arch} {SUITE}\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


class Mounted:
    """/proc, /sys, /dev and /dev/pts bound into the chroot while in use."""

    POINTS = ("proc", "sys", "dev", "dev/pts")

    def __init__(self, root: Path):
        self.root = root
        self.done: list[Path] = []

    def __enter__(self) -> Mounted:
        for point in self.POINTS:
            target = self.root / point
            target.mkdir(parents=True, exist_ok=True)
            if subprocess.run(["mountpoint", "-q", str(target)]).returncode == 0:
                continue
            subprocess.run(["mount", "--bind", f"/{point}", str(target)], check=True)
            self.done.append(target)
        return self

    def __exit__(self, *exc) -> None:
        for target in reversed(self.done):
            subprocess.run(["umount", "-l", str(target)], check=False)


# the host's network settings that pip inside the chroot needs too (a proxy, or a TLS-inspecting
# proxy's CA bundle); files they name are copied to the same path inside
PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
            "PIP_INDEX_URL", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
CERT_ENV = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def stop_leftovers(root: Path) -> int:
    """Kill what still runs inside `root` (a run interrupted mid-script leaves its processes,
    e.g. an agent that would reopen the next run's GPS pty and take its fixes); how many."""
    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root") == str(root):
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
        except (OSError, ProcessLookupError):  # gone meanwhile, or not ours to read
            continue
    return killed


def _host_network_env(root: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASS_ENV if os.environ.get(k)}
    for key in CERT_ENV:
        path = env.get(key)
        if path and Path(path).is_file():
            inside = root / path.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, inside)
        elif path:
            env.pop(key)
    return env


def run(root: Path, script: str, timeout: float = 3600, env: dict | None = None,
        ) -> subprocess.CompletedProcess:
    """Run a shell script as root inside the chroot (mounts held for its duration)."""
    environ = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
               **_host_network_env(root), **(env or {})}
    with Mounted(root):
        return subprocess.run(["chroot", str(root), "/bin/sh", "-ec", script], env=environ,
                              capture_output=True, text=True, timeout=timeout)


def copy_tree(root: Path, dest: str) -> Path:
    """Copy the files git tracks into the chroot at `dest`; returns the host path."""
    target = root / dest.lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    for f in filter(None, files):
        rel = f.decode()
        src, out = REPO / rel, target / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            out.symlink_to(src.readlink())
        elif src.exists():
            shutil.copy2(src, out)
    return target


def wheelhouse(arch: str, log=print) -> Path:
    """The `arch` wheels of every package in requirements/agent.lock, downloaded by the
    host's pip (native speed, pip's own cache; each file checked against the lock's hashes)
    into a directory cached by the lock's hash."""
    import hashlib

    lock = RUNTIME_LOCK.read_bytes()
    key = hashlib.sha256(PYTHON_VERSION.encode() + lock).hexdigest()[:12]
    house = cache_dir() / f"wheels-{arch}-{key}"
    if (house / ".complete").exists():
        return house
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    log(f"downloading {arch} wheels into {house}")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
           "--require-hashes", "--python-version", PYTHON_VERSION, "--implementation", "cp",
           "-d", str(house), *(f"--platform={tag}" for tag in WHEEL_PLATFORMS[arch]),
           "-r", str(RUNTIME_LOCK)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"no {arch} wheels for every requirement:\n{out.stderr[-3000:]}")
    (house / ".complete").write_text(f"{RUNTIME_LOCK.name} {key}\n")
    return house


# pip inside the chroot: only the downloaded wheels, never an index or a compiler
PIP_OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/build/wheels",
               "PIP_ONLY_BINARY": ":all:", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


# where the source tree is copied inside the root (dh_virtualenv runs there)
SOURCE_DIR = "/build/fleet-agent"
# the web app's bundle: architecture-independent, built on the host (`make web`, Node.js) so
# the emulated build needs no npm (debian/rules builds it only when it is missing)
WEB_BUNDLE = REPO / "backend" / "static" / "app"
# the same build's copy of the driver app for the in-cab tablet, package data of the agent
CAB_BUNDLE = REPO / "agent" / "cab_static"


def build_deb(arch: str = "arm64", out_dir: Path | None = None, log=print) -> Path:
    """The `arch` .deb: the host's dpkg-buildpackage cross-builds it (`-a arch`, debhelper is
    architecture-independent) and runs only dh_virtualenv in the chroot (DH_VIRTUALENV_RUN in
    debian/rules), from the `arch` wheels; returns the .deb (copied to out_dir)."""
    root = ensure_root(arch, log)
    house = wheelhouse(arch, log)
    if not (WEB_BUNDLE / "app.js").exists() or not (CAB_BUNDLE / "driver.js").exists():
        subprocess.run(["make", "web"], cwd=REPO, check=True, capture_output=True)
    tree = copy_tree(root, SOURCE_DIR)
    shutil.copytree(WEB_BUNDLE, tree / "backend" / "static" / "app", dirs_exist_ok=True)
    shutil.copytree(CAB_BUNDLE, tree / "agent" / "cab_static", dirs_exist_ok=True)
    shutil.rmtree(root / "build" / "wheels", ignore_errors=True)
    shutil.copytree(house, root / "build" / "wheels")
    for old in (root / "build").glob("fleet-agent_*"):
        old.unlink()
    wrapper = root / "build" / "in-chroot"
    wrapper.write_text(f"#!/bin/sh\n# run a command in the {arch} root, in the source tree\n"
                       f"exec chroot {root} /bin/sh -c 'cd {SOURCE_DIR} && exec \"$@\"' "
                       f"in-chroot \"$@\"\n")
    wrapper.chmod(0o755)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", **PIP_OFFLINE, "DH_VIRTUALENV_RUN": str(wrapper),
           "DEB_BUILD_OPTIONS": "nocheck"}  # the package has no build-time tests
    log(f"dpkg-buildpackage -a {arch} (dh_virtualenv in the {arch} chroot, wheels only)")
    # -d: the web bundle came built and nothing compiles, so neither the host nor the chroot
    # needs the Build-Depends for those (nodejs, npm, gcc, python3-dev for arm64)
    with Mounted(root):
        out = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b", "-d", f"-a{arch}",
                              f"-P{AGENT_ONLY_PROFILE}"],
                             cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"build failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    debs = sorted((root / "build").glob(f"fleet-agent_*_{arch}.deb"))
    if not debs:
        raise RuntimeError(f"no fleet-agent_*_{arch}.deb produced")
    out_dir = out_dir or REPO / "run"
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / debs[-1].name
    shutil.copy2(debs[-1], dest)
    return dest


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("build", "deb", "shell"):
        print(__doc__)
        return 2
    arch = argv[1] if len(argv) > 1 else "arm64"
    if arch not in QEMU_NAMES:
        print(f"architecture must be one of {', '.join(QEMU_NAMES)}")
        return 2
    try:
        if argv[0] == "build":
            with locked(arch):
                print(ensure_root(arch))
        elif argv[0] == "deb":
            with locked(arch):
                print(build_deb(arch))
        else:
            with locked(arch):
                root = ensure_root(arch)
                with Mounted(root):
                    return subprocess.call(["chroot", str(root), "/bin/bash"])
    except ChrootUnavailable as exc:
        print(f"chroot unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
