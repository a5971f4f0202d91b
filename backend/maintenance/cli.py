"""`python -m backend service record|history`: record a service on the store (it closes the
open `service` alert and restarts the interval, as POST /api/vehicles/{v}/services does) and
print a vehicle's service history as JSON lines."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from geostream.clock import wall_ms

if TYPE_CHECKING:
    from .config import MaintenanceConfig

DEFAULT_HISTORY = 100


def service_parser(sub) -> None:
    s = sub.add_parser("service", help="record a vehicle's service (closes its service "
                       "alert) or print its service history (docs/maintenance.md)")
    ssub = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = ssub.add_parser("record", help="record a service; prints it as JSON")
    r.add_argument("vehicle_id")
    r.add_argument("--interval", required=True, help="a configured [[maintenance.interval]]")
    r.add_argument("--time", help="ISO 8601 date or time of the service (default: now)")
    r.add_argument("--odometer", type=float, help="odometer at the service, km")
    r.add_argument("--engine-hours", type=float, help="engine hours at the service")
    r.add_argument("--work", default="", help="work done")
    r.add_argument("--cost", type=float, help="what it cost")
    r.add_argument("--who", default="", help="who did it (default: cli)")
    h = ssub.add_parser("history", help="a vehicle's services, newest first, as JSON lines")
    h.add_argument("vehicle_id")
    h.add_argument("--limit", type=int, default=DEFAULT_HISTORY)


async def run_service(args, store, cfg: MaintenanceConfig, who: str) -> int:
    # here, not at the top: every command builds the parser (`service_parser`)
    from .monitor import MaintenanceMonitor
    from .records import parse_service, record_json, row_of

    vehicles = {v["vehicle_id"]: v for v in await store.list_vehicles()}
    vehicle = vehicles.get(args.vehicle_id)
    if vehicle is None:
        print(f"backend service: unknown vehicle {args.vehicle_id!r}", file=sys.stderr)
        return 1
    if args.action == "history":
        if not 1 <= args.limit <= 1000:
            print("backend service: --limit must be in [1, 1000]", file=sys.stderr)
            return 2
        for row in await store.list_services(args.vehicle_id, args.limit):
            print(json.dumps(record_json(row)))
        return 0
    body = {"interval": args.interval, "time": args.time, "odometer_km": args.odometer,
            "engine_h": args.engine_hours, "work": args.work, "cost": args.cost,
            "who": args.who}
    now = wall_ms()
    try:
        rec = parse_service({k: v for k, v in body.items() if v is not None},
                            await MaintenanceMonitor(store, cfg).intervals_of(
                                args.vehicle_id), now, who)
    except ValueError as exc:
        print(f"backend service: {exc}", file=sys.stderr)
        return 2
    sid = await store.add_service(args.vehicle_id, rec.interval, rec.done_ms, rec.odometer_km,
                                  rec.engine_h, rec.work, rec.who, cost=rec.cost)
    await store.add_audit(now, who, "service.record", args.vehicle_id,
                          {"interval": rec.interval, "id": sid})
    closed = await MaintenanceMonitor(store, cfg).after_service(
        args.vehicle_id, vehicle.get("created_ms") or 0, now)
    print(json.dumps({"service": record_json(row_of(sid, args.vehicle_id, rec)),
                      "closed_alerts": len(closed)}))
    return 0
