"""Load DBC files with errors that name the file and, whenever possible, the line."""

from __future__ import annotations

import re
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
    path = str(path)
    try:
        with open(path, encoding="cp1252", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise DbcError(path, None, exc.strerror or str(exc)) from None
    try:
        db = cantools.database.load_string(text, database_format="dbc", strict=True)
    except Exception as exc:  # cantools raises parse, value and key errors alike
        detail = str(exc).replace('DBC: "', "").strip().strip('"') or type(exc).__name__
        match = _LINE_RE.search(detail)
        line = int(match.group(1)) if match else _guess_line(text, detail)
        raise DbcError(path, line, detail) from None
    if not db.messages:
        raise DbcError(path, None, "no messages (BO_) defined")
    return db
