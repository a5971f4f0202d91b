"""An honest power cut for a process on the host: what it did not fsync is lost.

A kill -9 alone is not a power cut: the kernel's page cache keeps every write() the process
made. Here an LD_PRELOAD library (C, built with the system's cc on first use) wraps fsync(2)
and fdatasync(2): after a successful sync of a regular file inside the *durable directory*, it
copies that file, as it is at that moment, into a *shadow directory* (written to a temporary
name, then renamed, so a copy cut short leaves the previous one). The shadow therefore holds,
for each file, exactly its content at its last completed sync.

`cut(durable_dir, shadow_dir)`, called once the process group is dead, rolls the durable
directory back to the shadow: a file with a shadow gets the shadow's bytes, a file never synced
is deleted (SQLite's -shm, a WAL not yet synced). unlink(2) is wrapped too: a delete counts
as durable at once and drops the file's shadow.

What this models: a disk that persists everything up to each file's last flush and nothing
after it, the strict case that SQLite's WAL with synchronous=FULL must survive. Not modelled:
torn sectors, writes after a flush that reached the medium anyway (in any order), and directory
entries beyond that (a file counts as present once it was synced, gone once unlinked; SQLite
syncs the directory when it creates its WAL). SQLite on Debian calls fdatasync and unlink
through the PLT, so the wrapper sees them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ENV_DURABLE = "HIL_DURABLE_DIR"
ENV_SHADOW = "HIL_SHADOW_DIR"
PAGE = 4096  # the unit in which the report counts what a cut discarded (SQLite's page size)

_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_unlink)(const char *);

__attribute__((constructor)) static void init(void) {
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_unlink = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
}

/* copy the synced file into the shadow directory: temporary name, then rename */
static void keep(int fd) {
    const char *dir = getenv("HIL_DURABLE_DIR"), *shadow = getenv("HIL_SHADOW_DIR");
    char link[64], path[PATH_MAX], tmp[PATH_MAX + 64], dst[PATH_MAX + 64], buf[65536];
    struct stat st;
    if (!dir || !shadow) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    size_t dl = strlen(dir);
    if (strncmp(path, dir, dl) != 0 || path[dl] != '/' || strchr(path + dl + 1, '/')) return;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld", shadow, path + dl + 1, (long)syscall(SYS_gettid));
    snprintf(dst, sizeof dst, "%s/%s", shadow, path + dl + 1);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) return;
    off_t off = 0;
    ssize_t r;
    while ((r = pread(fd, buf, sizeof buf, off)) > 0) {
        for (ssize_t w = 0; w < r;) {
            ssize_t k = write(out, buf + w, r - w);
            if (k <= 0) { close(out); unlink(tmp); return; }
            w += k;
        }
        off += r;
    }
    close(out);
    if (r < 0) { unlink(tmp); return; }
    rename(tmp, dst);
}

/* a delete is durable at once (a journaling file system commits it with the next sync):
   the file's shadow goes too, so a cut never brings back e.g. a rollback journal */
static void forget(const char *p) {
    const char *dir = getenv("HIL_DURABLE_DIR"), *shadow = getenv("HIL_SHADOW_DIR");
    char buf[PATH_MAX], real[PATH_MAX], dst[PATH_MAX + 64];
    if (!dir || !shadow || strlen(p) >= sizeof buf) return;
    strcpy(buf, p);
    char *slash = strrchr(buf, '/');
    const char *base = p;
    if (slash) { *slash = 0; base = slash + 1; }
    if (!realpath(slash ? (buf[0] ? buf : "/") : ".", real) || strcmp(real, dir) != 0) return;
    snprintf(dst, sizeof dst, "%s/%s", shadow, base);
    real_unlink(dst);
}

int unlink(const char *p) { int rc = real_unlink(p); if (rc == 0) forget(p); return rc; }
int fsync(int fd) { int rc = real_fsync(fd); if (rc == 0) keep(fd); return rc; }
int fdatasync(int fd) { int rc = real_fdatasync(fd); if (rc == 0) keep(fd); return rc; }
"""


def build(cache_dir: Path) -> Path:
    """The wrapper library, compiled once per source version into cache_dir."""
    tag = hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]
    lib = cache_dir / f"hil-powercut-{tag}.so"
    if lib.exists():
        return lib
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "powercut.c"
        src.write_text(_SOURCE)
        out = Path(tmp) / lib.name
        res = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(out), str(src), "-ldl"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"cannot build the power-cut library (needs cc): {res.stderr}")
        shutil.move(out, lib)
    return lib


def environ(lib: Path, durable_dir: Path, shadow_dir: Path) -> dict[str, str]:
    """Environment for the process whose files in durable_dir should obey power cuts."""
    shadow_dir.mkdir(parents=True, exist_ok=True)
    # the wrapper compares /proc/self/fd paths: use the real path of both directories
    return {"LD_PRELOAD": str(lib), ENV_DURABLE: os.path.realpath(durable_dir),
            ENV_SHADOW: os.path.realpath(shadow_dir)}


def cut(durable_dir: Path, shadow_dir: Path) -> int:
    """Roll durable_dir back to its last synced state; returns the pages that changed."""
    lost = 0
    kept = {p.name for p in shadow_dir.iterdir() if not p.name.startswith(".")}
    for p in list(durable_dir.iterdir()):
        if p.is_file() and p.name not in kept:
            lost += -(-p.stat().st_size // PAGE)
            p.unlink()
    for name in kept:
        now = durable_dir / name
        old = (shadow_dir / name).read_bytes()
        cur = now.read_bytes() if now.exists() else b""
        lost += _pages_differing(cur, old)
        tmp = durable_dir / f".{name}.restore"
        tmp.write_bytes(old)
        os.replace(tmp, now)
    return lost


def _pages_differing(a: bytes, b: bytes) -> int:
    n = max(len(a), len(b))
    return sum(a[i:i + PAGE] != b[i:i + PAGE] for i in range(0, n, PAGE))
