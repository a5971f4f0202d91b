"""Trouble codes from the agents' `dtc` events (docs/protocol.md §4): each event carries the
complete set of one controller (bus, proto, src, set), so a code missing from the next set of
the same controller has closed. Pure: fold events in device-time order into episodes, then
into one workflow row per code (active, pending or cleared, recurrences, frequency per km)."""

from __future__ import annotations

import math

from ..alerts.evaluate import dtc_code


def _controller(data: dict) -> str:
    return f"{data.get('bus', '')}/{data.get('proto', '')}/{data.get('src', '')}/" \
           f"{data.get('set', '')}"


def fold(events: list[tuple[int, dict]]) -> list[dict]:
    """[(time_ms, data)] → one row per (controller, code) and episode run: open or closed,
    first and last seen, how many events reported it, the last J1939 occurrence count."""
    current: dict[tuple[str, str], dict] = {}
    closed: list[dict] = []
    for t, data in sorted(events, key=lambda e: e[0]):
        ctl = _controller(data)
        now = {}
        for item in data.get("dtcs") or []:
            code = dtc_code(item)
            if code is not None:
                now[code] = item if isinstance(item, dict) else {}
        for key in [k for k in current if k[0] == ctl and k[1] not in now]:
            row = current.pop(key)
            closed.append({**row, "state": "closed", "closed_ms": t})
        for code, item in now.items():
            row = current.get((ctl, code))
            if row is None:
                row = current[(ctl, code)] = {
                    "code": code, "controller": ctl, "proto": data.get("proto"),
                    "set": data.get("set"), "first_ms": t, "count": 0, "lamps": None}
            row["last_ms"] = t
            row["count"] += 1
            if "oc" in item:
                row["occurrences"] = item["oc"]
            if data.get("lamps"):
                row["lamps"] = data["lamps"]
    open_rows = [{**r, "state": "open", "closed_ms": None} for r in current.values()]
    return sorted(open_rows, key=lambda r: r["first_ms"]) + sorted(
        closed, key=lambda r: r["first_ms"])


# Frequency per 1,000 km needs at least this much distance in the window: over a few hundred
# metres one episode would read as thousands per 1,000 km.
MIN_KM_FOR_FREQUENCY = 10.0
PENDING_SETS = ("pending",)  # OBD-II mode 07: seen once, not yet confirmed by the ECU


def _count(value) -> int | None:
    """A J1939 occurrence count as sent (0–126), else None: event data is the vehicle's."""
    return value if isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value <= 126 else None


def _runs(episodes: list[dict]) -> list[tuple[int, float]]:
    """Merge a code's episodes over controllers and sets (OBD pending → stored overlaps) into
    runs [first seen, cleared) (open: +inf); a run starting after the previous one cleared is
    a recurrence."""
    runs: list[list] = []
    for e in sorted(episodes, key=lambda e: e["first_ms"]):
        end = math.inf if e["closed_ms"] is None else e["closed_ms"]
        if runs and e["first_ms"] <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([e["first_ms"], end])
    return [(a, b) for a, b in runs]


def workflow(episodes: list[dict], km: float | None) -> list[dict]:
    """fold()'s episodes of one vehicle → one row per code: `status` active (open in an active
    or stored set), pending (open only in a pending set) or cleared; first and last seen; when
    it last cleared; `episodes` (runs), `recurrences` (runs that began after a clear, with the
    time of the latest); `per_1000_km` (runs per 1,000 km over `km` driven in the window).
    Ordered active, pending, cleared, then newest last seen first."""
    by_code: dict[str, list[dict]] = {}
    for e in episodes:
        by_code.setdefault(e["code"], []).append(e)
    out = []
    for code, eps in by_code.items():
        open_sets = {e.get("set") for e in eps if e["state"] == "open"}
        status = ("active" if open_sets - set(PENDING_SETS) else
                  "pending" if open_sets else "cleared")
        runs = _runs(eps)
        closed = [e["closed_ms"] for e in eps if e["closed_ms"] is not None]
        latest = max(eps, key=lambda e: e["last_ms"])
        out.append({
            "code": code, "status": status, "proto": latest.get("proto"),
            "controllers": sorted({e["controller"] for e in eps}),
            "first_ms": min(e["first_ms"] for e in eps),
            "last_ms": latest["last_ms"],
            "cleared_ms": None if status != "cleared" else max(closed),
            "episodes": len(runs), "recurrences": len(runs) - 1,
            "recurred_ms": runs[-1][0] if len(runs) > 1 else None,
            "reports": sum(e["count"] for e in eps),
            "occurrences": _count(latest.get("occurrences")),
            "lamps": latest["lamps"] if isinstance(latest.get("lamps"), dict) else None,
            "per_1000_km": (None if km is None or km < MIN_KM_FOR_FREQUENCY
                            else round(len(runs) / km * 1000, 3)),
        })
    order = {"active": 0, "pending": 1, "cleared": 2}
    return sorted(out, key=lambda r: (order[r["status"]], -r["last_ms"], r["code"]))


def shared_codes(per_vehicle: dict[str, list[dict]]) -> None:
    """Add to every row `other_vehicles`: the other vehicles whose rows show the same code
    (in place; per_vehicle[vehicle] = workflow rows)."""
    seen: dict[str, set[str]] = {}
    for vehicle, rows in per_vehicle.items():
        for r in rows:
            seen.setdefault(r["code"], set()).add(vehicle)
    for vehicle, rows in per_vehicle.items():
        for r in rows:
            r["other_vehicles"] = sorted(seen[r["code"]] - {vehicle})
