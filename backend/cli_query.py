"""`python -m backend query …`: the store's answers (routes, last positions, geofence
entries, trips, geofences) as JSON, the same as the REST API's."""

from __future__ import annotations

import json
import sys


def query_parser(sub) -> None:
    q = sub.add_parser("query", help="ask the store: route, last positions, geofence entries, "
                       "trips; prints JSON (the same answers as the REST API)")
    qsub = q.add_subparsers(dest="query", metavar="QUERY", required=True)
    r = qsub.add_parser("route", help="route of a vehicle as a GeoJSON LineString Feature")
    r.add_argument("vehicle_id")
    r.add_argument("--from", dest="start", help="ISO-8601 or epoch ms (default: --to - 48 h)")
    r.add_argument("--to", dest="end", help="ISO-8601 or epoch ms (default: now)")
    r.add_argument("--step-s", type=float, help="downsample: first point per bucket of N s")
    r.add_argument("--max-points", type=int, help="downsample to about N points")
    qsub.add_parser("last", help="last position of every vehicle (GeoJSON FeatureCollection)")
    e = qsub.add_parser("entered", help="vehicles that entered a geofence in a time window")
    e.add_argument("geofence_id")
    e.add_argument("--from", dest="start", help="ISO-8601 or epoch ms (default: yesterday)")
    e.add_argument("--to", dest="end", help="ISO-8601 or epoch ms (default: yesterday's end)")
    t = qsub.add_parser("trips", help="trips and stops of a vehicle on a UTC day")
    t.add_argument("vehicle_id")
    t.add_argument("--day", help="YYYY-MM-DD (default: today, UTC)")
    g = qsub.add_parser("geofence-add", help="create or replace a geofence from GeoJSON")
    g.add_argument("geofence_id")
    g.add_argument("geojson", help="file with a GeoJSON Polygon (or a Feature of one); - = stdin")
    g.add_argument("--name", help="display name (default: the id)")
    qsub.add_parser("geofences", help="list geofences")


async def run_query(args, store):
    from . import queries  # only when querying: the CLI starts without it

    if args.query == "route":
        step = round(args.step_s * 1000) if args.step_s else None
        return await queries.route(store, args.vehicle_id, queries.parse_time(args.start),
                                   queries.parse_time(args.end), step_ms=step,
                                   max_points=args.max_points)
    if args.query == "last":
        return await queries.last_positions(store)
    if args.query == "entered":
        return await queries.geofence_entries(store, args.geofence_id,
                                              queries.parse_time(args.start),
                                              queries.parse_time(args.end))
    if args.query == "trips":
        return await queries.trips(store, args.vehicle_id, args.day)
    if args.query == "geofence-add":
        with (sys.stdin if args.geojson == "-" else open(args.geojson)) as f:
            shape = json.load(f)
        if shape.get("type") == "Feature":
            shape = shape["geometry"]
        await store.put_geofence(args.geofence_id, args.name or args.geofence_id, shape)
        return {"geofence_id": args.geofence_id, "stored": True}
    return await store.geofences()
