"""config.get / config.set on the agent's TOML file (docs/protocol.md §3 command): merge a
fragment over the file keeping the operator's comments and layout (tomlkit), check the result
with check-config's own rules before anything is written, write it atomically, and show a
configuration with its secrets hidden. Pure but for the file writes in `write_atomically`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from .check_config import check

HIDDEN = "***"
# keys whose values never leave the vehicle in config.get
SECRET_KEYS = frozenset({"token"})


class ChangeRefused(ValueError):
    """The fragment cannot be applied: nothing was written."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def redacted(value: Any) -> Any:
    """`value` with every secret replaced by HIDDEN."""
    if isinstance(value, dict):
        return {k: HIDDEN if k in SECRET_KEYS else redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def shown(text: str, section: str | None = None) -> dict:
    """config.get's answer for the file's `text`."""
    config = redacted(tomllib.loads(text))
    if section is not None:
        if section not in config:
            raise ChangeRefused(f"no [{section}] in the configuration")
        config = {section: config[section]}
    return {"config": config, "file_sha256": sha256(text)}


def _merge(dst: Any, src: Any) -> None:
    """Tables merge key by key; everything else (values, arrays of tables) replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


def merged(text: str, fragment: str) -> str:
    """The file `text` with the TOML `fragment` merged over it (comments kept)."""
    import tomlkit  # imported when a change comes, not at every agent start

    try:
        doc = tomlkit.parse(text)
        frag = tomlkit.parse(fragment)
    except Exception as exc:  # tomlkit's parse errors have no common base but Exception
        raise ChangeRefused(f"not TOML: {exc}") from None
    _merge(doc, frag)
    return tomlkit.dumps(doc)


def checked(path: Path, new_text: str) -> None:
    """Raise ChangeRefused with check-config's problems when `new_text` would not run."""
    fd, tmp = tempfile.mkstemp(prefix=".check-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
        problems = check(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if problems:
        raise ChangeRefused("; ".join(p.replace(tmp, path.name) for p in problems)[:1000])


def write_atomically(path: Path, text: str) -> None:
    """Replace the file: a crash leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)  # the token inside stays as private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
