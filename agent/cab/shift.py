"""The route of the driver's shift as the cab serves it (pure): the mailbox's routes (route.set
copies, backend/route_courier.py) turned into the backend's `/api/driver/shift` answer, so the
same app reads either (docs/protocol.md §11)."""

from __future__ import annotations

# The backend's margin around a shift (docs/driver.md: loading the van, the paperwork).
SHIFT_MARGIN_MS = 2 * 3600 * 1000
# Routes a driver works from (the courier clears done and cancelled ones).
WORKED = ("active", "dispatched")


def current_route(routes: list[dict], now_ms: int) -> dict | None:
    """The route whose shift (with the margins) holds now, an active one first, then the one
    starting first."""
    def holds(r: dict) -> bool:
        shift = r.get("shift") or {}
        start, end = shift.get("start_ms"), shift.get("end_ms")
        if not isinstance(start, int) or not isinstance(end, int):
            return False
        return start - SHIFT_MARGIN_MS <= now_ms <= end + SHIFT_MARGIN_MS

    candidates = [r for r in routes if r.get("status") in WORKED and holds(r)]
    candidates.sort(key=lambda r: (r.get("status") != "active", r["shift"]["start_ms"],
                                   str(r.get("route_id"))))
    return candidates[0] if candidates else None


def shift_answer(routes: list[dict], states: dict[str, str], vehicle: str,
                 now_ms: int) -> dict:
    """`/api/driver/shift` from the vehicle's mailbox; `states`: each job's state as the
    driver's own actions on the vehicle leave it."""
    route = current_route(routes, now_ms)
    body: dict = {"driver": None, "route": None, "stops": [], "now_ms": now_ms}
    if route is None:
        return body
    rid = route["route_id"]
    body["route"] = {"id": rid, "vehicle_id": vehicle, "status": route.get("status"),
                     "version": route.get("version"), "shift": route.get("shift"),
                     "driver_id": route.get("driver_id")}
    if route.get("driver_id"):
        body["driver"] = {"id": route["driver_id"]}
    for s in route.get("stops") or []:
        if not isinstance(s, dict) or not isinstance(s.get("job_id"), str):
            continue
        body["stops"].append({
            "id": s["job_id"], "name": s.get("name") or "", "kind": s.get("kind", "visit"),
            "place": {"lat": s.get("lat"), "lon": s.get("lon"),
                      "address": s.get("address") or ""},
            "windows": s.get("windows") or [], "service_s": s.get("service_s", 0),
            "notes": s.get("notes") or "", "contact": s.get("contact") or {},
            "state": states.get(s["job_id"], "assigned"), "route_id": rid,
            "planned_arrival_ms": s.get("arrival_ms")})
    return body
