"""Load DBC files as cantools' non-strict mode does, with warnings and errors that name the
file and, whenever possible, the line.

Many real DBC files have overlapping signals or a signal that does not fit its message;
cantools decodes them with `strict=False`, and so do we. Each problem strict mode would raise
becomes one `DbcWarning` per message (cantools stops at a message's first problem). Only a
file cantools cannot parse at all raises `DbcError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cantools
from cantools.database.can import Database

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "dbc"


class DbcError(Exception):
    def __init__(self, path: str, line: int | None, detail: str):
        self.path = path
        self.line = line
        self.detail = detail
        where = f"{path} line {line}" if line else path
        super().__init__(f"{where}: {detail}")


@dataclass(frozen=True)
class DbcWarning:
    """A problem strict mode would refuse; the file still loads."""

    path: str
    line: int | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.path} line {self.line}" if self.line else self.path
        return f"{where}: {self.detail}"


_LINE_RE = re.compile(r"line (\d+)")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _guess_line(text: str, detail: str) -> int | None:
    """Errors found after parsing (overlapping signals...) name a message or signal, not a
    line: point at the first definition of a name the message mentions."""
    lines = text.splitlines()
    for kind in (r"SG_", r"BO_\s+\d+"):
        for name in _NAME_RE.findall(detail):
            pattern = re.compile(rf"^\s*{kind}\s+{re.escape(name)}\b")
            for number, line in enumerate(lines, 1):
                if pattern.match(line):
                    return number
    return None


def resolve_dbc(name: str, base_dir: Path) -> Path:
    """A path as written in config: absolute, relative to base_dir, or a shipped DBC's name."""
    path = Path(name)
    if path.is_absolute():
        return path
    local = base_dir / path
    if local.exists() or not (BUILTIN_DIR / path).exists():
        return local
    return BUILTIN_DIR / path


def load_dbc(path: Path | str) -> Database:
    """The database, warnings dropped (see `load_dbc_checked`)."""
    return load_dbc_checked(path)[0]


def load_dbc_checked(path: Path | str) -> tuple[Database, list[DbcWarning]]:
    """Load non-strictly; the warnings list each message strict mode would have refused."""
    path = str(path)
    try:
        with open(path, encoding="cp1252", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise DbcError(path, None, exc.strerror or str(exc)) from None
    try:
        db = cantools.database.load_string(text, database_format="dbc", strict=False)
    except Exception as exc:  # cantools raises parse, value and key errors alike
        detail = _detail(exc)
        match = _LINE_RE.search(detail)
        line = int(match.group(1)) if match else _guess_line(text, detail)
        raise DbcError(path, line, detail) from None
    if not db.messages:
        raise DbcError(path, None, "no messages (BO_) defined")
    warnings = []
    for message in db.messages:
        try:
            message.refresh(strict=True)  # runs strict mode's checks on this message only
        except Exception as exc:  # cantools.database.Error, or what a bad mux tree raises
            detail = _detail(exc)
            warnings.append(DbcWarning(path, _guess_line(text, detail), detail))
            message.refresh(strict=False)
    return db, warnings


def _detail(exc: Exception) -> str:
    return str(exc).replace('DBC: "', "").strip().strip('"') or type(exc).__name__
