"""The Python the SQLite store thread ran per commit in sessions 11–13, kept for the benches'
"before" sides (bench_store_write: session 11's write path; bench_store_rows): one pass over a
batch giving `_INSERT`'s rows, each vehicle's newest position and each (vehicle, signal)'s
newest CAN value (since session 14 SQLite reads the signals at the move, `db.PendingLast`),
a CAN snapshot's numbers written once for both (`can_json`)."""

from __future__ import annotations

from operator import attrgetter, itemgetter

from backend.store.rows import StoredReading, can_json, json_text

# A reading's columns as one tuple, in C: StoredReading's fields are _INSERT's columns in
# order (backend/store/rows.py checks the field order), `data` still the decoded map.
_COLUMNS = attrgetter(*StoredReading.__dataclass_fields__)
# LAST_POSITION_UPSERT's values from such a tuple: vehicle, time, lat, lon, speed, course,
# epoch, seq
_LAST_COLUMNS = itemgetter(0, 3, 5, 6, 8, 9, 1, 2)
def session13_rows(readings: list[StoredReading]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The parameters of `_INSERT`, `LAST_POSITION_UPSERT` and `LAST_SIGNAL_UPSERT` for a
    batch, in one pass over it: every reading's row (its data as JSON text), each vehicle's
    newest position and each (vehicle, signal)'s newest CAN value (`bus` is not a signal; a
    later device time wins, the first of equal times stays), as `newest_positions` and
    `newest_signals` derive them.

    Why not those two and a row per attribute: the store thread holds the GIL for all of it,
    against the gateway's event loop (issue 29 profile at 8,000 vehicles: the row list 5.4 %,
    `newest_signals` 3.9 %, JSON ~3 % of the gateway's samples). Here the columns come from
    one C call per reading, and a CAN snapshot's numbers are written once each
    (`can_json`), for its row's JSON and for `last_signal` alike."""
    rows = list(map(_COLUMNS, readings))
    positions: dict[str, tuple] = {}
    cans: dict[str, list[tuple[int, list[tuple[str, str]]]]] = {}
    for i, row in enumerate(rows):
        kind, data = row[4], row[13]
        if kind == "pos":
            old = positions.get(row[0])
            if old is None or row[3] > old[3]:
                positions[row[0]] = row
        if data is None:
            continue
        if kind == "can" and isinstance(data, dict):
            text, values = can_json(data)
            same = cans.get(row[0])
            if same is None:
                cans[row[0]] = [(row[3], values)]
            else:
                same.append((row[3], values))
        else:
            text = json_text(data)
        rows[i] = (*row[:13], text, row[14])
    signals: list[tuple] = []
    for vehicle, snapshots in cans.items():
        if len(snapshots) == 1:
            t, values = snapshots[0]
            signals += [(vehicle, name, value, t) for name, value in values]
            continue
        newest: dict[str, tuple[str, int]] = {}
        for t, values in snapshots:
            for name, value in values:
                if name not in newest or t > newest[name][1]:
                    newest[name] = (value, t)
        signals += [(vehicle, name, value, t) for name, (value, t) in newest.items()]
    return rows, list(map(_LAST_COLUMNS, positions.values())), signals
