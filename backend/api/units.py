"""Units of CAN signals, from the DBC files the agents decode with (cantools).

The wire carries decoded values only (docs/protocol.md §4, kind "can"); the unit of a signal
is a property of its DBC definition, so the backend reads the same DBC files: the ones bundled
with the agent (agent/dbc/) unless others are given. A signal no DBC defines has no unit.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)


def bundled_dbcs() -> list[Path]:
    return sorted(Path(str(resources.files("agent") / "dbc")).glob("*.dbc"))


@functools.cache
def signal_units(paths: tuple[Path, ...] | None = None) -> dict[str, str]:
    """{signal name: unit} of every signal with a unit in the DBC files (first one wins).
    cantools is imported here, at the first vehicles request: ~0.15 s of a backend's start
    otherwise (several seconds in the emulated VM of tests/system/test_deb_vm.py)."""
    import cantools

    out: dict[str, str] = {}
    for path in paths if paths is not None else tuple(bundled_dbcs()):
        try:
            db = cantools.database.load_file(str(path), strict=False)
        except (OSError, cantools.database.UnsupportedDatabaseFormatError) as exc:
            log.warning("CAN units: cannot read %s: %s", path, exc)
            continue
        for message in db.messages:
            for signal in message.signals:
                if signal.unit:
                    out.setdefault(signal.name, signal.unit)
    return out
