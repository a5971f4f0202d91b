"""Trouble codes from the agents' `dtc` events (docs/protocol.md §4): each event carries the
complete set of one controller (bus, proto, src, set), so a code missing from the next set of
the same controller has closed. Pure: fold events in device-time order."""

from __future__ import annotations

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
                    "first_ms": t, "count": 0, "lamps": None}
            row["last_ms"] = t
            row["count"] += 1
            if "oc" in item:
                row["occurrences"] = item["oc"]
            if data.get("lamps"):
                row["lamps"] = data["lamps"]
    open_rows = [{**r, "state": "open", "closed_ms": None} for r in current.values()]
    return sorted(open_rows, key=lambda r: r["first_ms"]) + sorted(
        closed, key=lambda r: r["first_ms"])
