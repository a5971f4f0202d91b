"""Secret files (private keys, the cluster key, tokens, session tickets): created with mode 0600
from the first byte, replaced atomically, and refused when others may read them.

`os.open` with the mode, never a chmod after writing: between a write and a chmod the content
is readable under the umask's mode, and a crash there leaves it so. Shared by the agent and the
backend.
"""

from __future__ import annotations

import os
import stat

PRIVATE_MODE = 0o600
# a secret file is small (a key, a token, a ticket); a bigger one is not what it claims to be
MAX_SECRET_BYTES = 1024 * 1024


def write_private(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` with mode 0600: a temporary file in the same directory, created
    with that mode (O_EXCL, O_NOFOLLOW), fsynced (unless not `durable`: a file that is only a
    cache, which a power cut may leave old or empty), then renamed over `path`."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def create_private(path: str | os.PathLike) -> None:
    """Create `path` empty with mode 0600 if it does not exist (a database file the caller
    then opens); an existing file is left as it is."""
    os.close(os.open(os.fspath(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE))


def read_private(path: str | os.PathLike) -> bytes:
    """The content of a secret file; ValueError if it is not a regular file of a sane size or
    if others (not owner, not group) may read or write it. A group may: root:fleet-backend
    0640 is how a package hands a secret to its service (as debian/ does with agent.toml)."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{os.fspath(path)}: not a regular file")
        if st.st_mode & 0o007:
            raise ValueError(f"{os.fspath(path)}: mode {stat.S_IMODE(st.st_mode):04o} lets "
                             "others read it; chmod o-rwx it")
        if st.st_size > MAX_SECRET_BYTES:
            raise ValueError(f"{os.fspath(path)}: too large for a secret file")
        return f.read(MAX_SECRET_BYTES)
