"""An arm64 (or armhf) Debian 12 chroot under qemu-user-static: build and smoke-test the .deb
for a Raspberry Pi without one.

The root file system is built once with debootstrap (~2 min for the base, more for the build
tools: every package's scripts run under emulation) and cached in `$FLEET_CHROOT_CACHE`, else
/var/tmp/fleet-agent-chroot/ (never in git). The .deb is built *inside* the chroot: dh-virtualenv
installs wheels for the interpreter it runs, so a native (emulated) build gets aarch64 wheels.

    python -m hil.chroot build [arm64|armhf]   # the cached root (tests do it on first use)
    python -m hil.chroot deb [arm64|armhf]     # build the .deb from the git tree into run/
    python -m hil.chroot shell [arm64|armhf]   # a shell in it

Needs root, debootstrap and qemu-user-static (`make deps-test`); the emulator is registered
with binfmt_misc here if it is not yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
QEMU_NAMES = {"arm64": "qemu-aarch64", "armhf": "qemu-arm"}
# what building the .deb needs (debian/control Build-Depends) plus what the smoke test runs
PACKAGES = (
    "python3", "python3-venv", "python3-dev", "gcc", "pkg-config", "libsystemd-dev",
    "debhelper", "dh-virtualenv", "dpkg-dev", "build-essential", "adduser", "ca-certificates",
    "sqlite3", "git",
)
# bump when PACKAGES or the layout changes, so a cached root is rebuilt
LAYOUT_VERSION = 1


class ChrootUnavailable(RuntimeError):
    """This machine cannot run the foreign-architecture chroot (the message says why)."""


def cache_dir() -> Path:
    return Path(os.environ.get("FLEET_CHROOT_CACHE") or "/var/tmp/fleet-agent-chroot")


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
    root = cache_dir() / f"{SUITE}-{arch}-v{LAYOUT_VERSION}"
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


# the web app's bundle: architecture-independent, built on the host (`make web`, Node.js) so
# the emulated build needs no npm (debian/rules builds it only when it is missing)
WEB_BUNDLE = REPO / "backend" / "static" / "app"


def build_deb(arch: str = "arm64", out_dir: Path | None = None, log=print) -> Path:
    """dpkg-buildpackage inside the `arch` chroot; returns the .deb (copied to out_dir)."""
    root = ensure_root(arch, log)
    if not (WEB_BUNDLE / "app.js").exists():
        subprocess.run(["make", "web"], cwd=REPO, check=True, capture_output=True)
    tree = copy_tree(root, "/build/fleet-agent")
    shutil.copytree(WEB_BUNDLE, tree / "backend" / "static" / "app", dirs_exist_ok=True)
    for old in (root / "build").glob("fleet-agent_*"):
        old.unlink()
    log(f"dpkg-buildpackage in the {arch} chroot (wheels are built or fetched for {arch})")
    # -d: the web bundle came built, so the chroot needs no nodejs/npm (Build-Depends)
    out = run(root, "cd /build/fleet-agent && dpkg-buildpackage -us -uc -b -d")
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
            print(ensure_root(arch))
        elif argv[0] == "deb":
            print(build_deb(arch))
        else:
            root = ensure_root(arch)
            with Mounted(root):
                return subprocess.call(["chroot", str(root), "/bin/bash"])
    except ChrootUnavailable as exc:
        print(f"chroot unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
