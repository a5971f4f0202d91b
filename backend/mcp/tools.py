"""What the MCP tools answer, as plain async functions over a store and a principal.

The MCP layer (server.py) only declares the tools; here each answer is computed with the same
queries as the HTTP API (backend/queries.py) and bounded by a named constant, and every
vehicle-scoped answer honours `Principal.may_see` (a vehicle the principal may not see is
"unknown", as in the API, so ids do not leak).
"""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta

from geostream.clock import wall_ms

from .. import queries
from ..alerts.fences import fences_from_rows
from ..authz import Principal, Role
from ..downlink import check_command
from ..driver.letters import STATES as LETTER_STATES
from ..driving import fuel as fuel_rules
from ..driving import report as driving_report
from ..driving import scorecard as driving_scores
from ..driving.thresholds import parse_driving
from ..maintenance import monitor
from ..maintenance.config import MaintenanceConfig
from ..store.base import AlertQuery

# An MCP answer lands in a model's context window: every list is capped.
MAX_VEHICLES = 500
MAX_ROUTE_POINTS = 500  # a route's polyline; enough to draw and describe a day
MAX_PRESENCE_POINTS = 20_000  # positions per vehicle examined for geofence presence
MAX_ALERTS = 200
MAX_BUCKETS = 500  # signal_history buckets
MAX_SIGNAL_SAMPLES = 200_000  # raw samples read to fill them
MAX_TRIPS = 200
MAX_CODES = 200
MAX_ROWS = 500  # rows of the due list, trouble codes, driving events, fuel rows per answer
DTC_DAYS = 90  # trouble codes: the last quarter, as the REST API's default
MAX_WHAT_IF_STOPS = 200  # a long route's stops; one matrix of them stays small
MAX_PLAN_STOPS = 2_000  # stops listed across a proposal's routes (a 1,000-job plan fits)
MAX_LETTERS = 200  # dead letters of vehicle actions: more is an incident, read it in the API
DAY_WORDS = ("today", "yesterday")


class Refused(Exception):
    """The principal may not do this (role), or the thing is unknown or invisible."""


def need(principal: Principal, role: Role) -> None:
    if not principal.may(role):
        raise Refused(f"needs role {role.label}")


def window(since: str | None, until: str | None, day: str | None, now: int,
           default_hours: float = 24) -> tuple[int, int]:
    """[start, end) in epoch ms from `day` ("today", "yesterday", "YYYY-MM-DD": a UTC day) or
    `since`/`until` (epoch ms or ISO 8601; default the last `default_hours`)."""
    if day:
        today = queries.parse_day(None, now)
        d = {"today": today, "yesterday": today - timedelta(days=1)}.get(day.strip().lower())
        return queries.day_bounds(d or date.fromisoformat(day))
    end = queries.parse_time(until, now)
    start = queries.parse_time(since, end - round(default_hours * 3_600_000))
    if end <= start:
        raise ValueError("until must be after since")
    return start, end


class FleetTools:
    def __init__(self, store, rules=None, maintenance=None, send_command=None, clock=None,
                 planning=None, etas=None):
        self.store = store
        self.etas = etas  # dispatch.eta_service.EtaService, in the running backend
        self.planning = planning  # dispatch.planning.PlanningService, in the running backend
        self.rules = rules  # alerts.rules.RuleSet, for the alert-rules resource
        self.maintenance = maintenance  # maintenance.config.MaintenanceConfig
        self.driving = parse_driving(None)  # driving.thresholds.DrivingConfig (service sets it)
        self._send = send_command or store.add_command  # gateway.downlink.send when serving
        self.notify = None  # notify.settings.NotifySettings (service sets it): its egress rule
        self.clock = clock or wall_ms

    async def _vehicles(self, p: Principal) -> list[dict]:
        return [v for v in await self.store.list_vehicles() if p.may_see(v["vehicle_id"])]

    async def _vehicle(self, p: Principal, vehicle: str) -> dict:
        for v in await self._vehicles(p):
            if v["vehicle_id"] == vehicle:
                return v
        raise Refused(f"unknown vehicle {vehicle!r}")

    async def list_vehicles(self, p: Principal) -> dict:
        vs = await self._vehicles(p)
        return {"vehicles": [{"id": v["vehicle_id"], "revoked": v.get("revoked_ms") is not None,
                              "last_seen_ms": v.get("last_seen_ms")} for v in vs[:MAX_VEHICLES]],
                "truncated": len(vs) > MAX_VEHICLES}

    async def vehicle_state(self, p: Principal, vehicle: str) -> dict:
        await self._vehicle(p, vehicle)
        pos = next((r for r in await self.store.last_positions()
                    if r["vehicle_id"] == vehicle), None)
        now = self.clock()
        open_alerts = await self.store.list_alerts(AlertQuery(vehicle=vehicle, state="open",
                                                              limit=MAX_ALERTS))
        return {"id": vehicle, "now_ms": now,
                "position": None if pos is None else {
                    k: pos[k] for k in ("time_ms", "lat", "lon", "speed_kmh", "course_deg")},
                "fix_age_s": None if pos is None else round((now - pos["time_ms"]) / 1000, 1),
                "can": (await self.store.last_signals()).get(vehicle, {}),
                "open_alerts": [a.as_json() for a in open_alerts]}

    async def route(self, p: Principal, vehicle: str, since=None, until=None, day=None,
                    max_points: int = MAX_ROUTE_POINTS) -> dict:
        await self._vehicle(p, vehicle)
        start, end = window(since, until, day, self.clock())
        feature = await queries.route(self.store, vehicle, start, end,
                                      max_points=max(1, min(max_points, MAX_ROUTE_POINTS)))
        props = feature["properties"]
        return {"vehicle": vehicle, "from_ms": start, "to_ms": end, "points": props["points"],
                "step_ms": props["step_ms"],
                "coordinates": feature["geometry"]["coordinates"],
                "times_ms": props["times_ms"], "speeds_kmh": props["speeds_kmh"]}

    async def trips(self, p: Principal, vehicle: str, day: str | None = None) -> dict:
        await self._vehicle(p, vehicle)
        d, _ = window(None, None, day or "today", self.clock())
        out = await queries.trips(self.store, vehicle, queries.parse_day(None, d))
        out["trips"], out["stops"] = out["trips"][:MAX_TRIPS], out["stops"][:MAX_TRIPS]
        return out

    async def _fence(self, p: Principal, geofence: str) -> dict:
        rows = [r for r in await self.store.geofences() if p.may_see_geofence(r["group"])]
        for r in rows:
            if str(r["geofence_id"]) == geofence:
                return r
        named = [r for r in rows if str(r.get("name", "")).lower() == geofence.lower()]
        if len(named) == 1:
            return named[0]
        raise Refused(f"unknown geofence {geofence!r}" if not named
                      else f"several geofences are named {geofence!r}: use the id")

    async def who_was_in_geofence(self, p: Principal, geofence: str, since=None, until=None,
                                  day=None) -> dict:
        row = await self._fence(p, geofence)
        start, end = window(since, until, day if day or since else "yesterday", self.clock())
        fence = fences_from_rows([row])[0]
        step = max(1, math.ceil((end - start) / MAX_PRESENCE_POINTS))
        present = []
        for v in await self._vehicles(p):
            inside = [q for q in await self.store.route(v["vehicle_id"], start, end, step)
                      if fence.contains(q["lat"], q["lon"])]
            if inside:
                present.append({"vehicle": v["vehicle_id"], "first_inside_ms": inside[0]["time_ms"],
                                "last_inside_ms": inside[-1]["time_ms"],
                                "positions_inside": len(inside)})
        entries = await self.store.geofence_entries(str(row["geofence_id"]), start, end)
        return {"geofence": {"id": str(row["geofence_id"]), "name": row.get("name")},
                "from_ms": start, "to_ms": end,
                "vehicles": [x["vehicle"] for x in present][:MAX_VEHICLES],
                "presence": present[:MAX_VEHICLES],
                "entries": [e for e in entries if p.may_see(e["vehicle_id"])][:MAX_ALERTS]}

    async def alerts(self, p: Principal, vehicle=None, rule=None, state=None,
                     limit: int = 50) -> dict:
        if vehicle is not None:
            await self._vehicle(p, vehicle)
        q = AlertQuery(vehicle=vehicle, vehicles=p.vehicles, rule=rule, state=state,
                       limit=max(1, min(limit, MAX_ALERTS)))
        return {"alerts": [a.as_json() for a in await self.store.list_alerts(q)
                           if p.may_see(a.vehicle_id)]}

    async def acknowledge_alert(self, p: Principal, alert_id: int) -> dict:
        need(p, Role.DISPATCHER)
        alert = await self.store.alert(alert_id) if 0 <= alert_id < 2**63 else None
        if alert is None or not p.may_see(alert.vehicle_id):
            raise Refused("unknown alert")
        first = alert.acknowledged_ms is None
        alert = await self.store.ack_alert(alert_id, p.name, self.clock())
        if first:
            await self.store.add_audit(self.clock(), p.name, "alert.ack", f"alert:{alert_id}",
                                       {"rule": alert.rule, "vehicle": alert.vehicle_id,
                                        "via": "mcp"})
        return alert.as_json()

    async def signal_history(self, p: Principal, vehicle: str, signal: str, since=None,
                             until=None, day=None, buckets: int = 48) -> dict:
        await self._vehicle(p, vehicle)
        start, end = window(since, until, day, self.clock())
        n = max(1, min(buckets, MAX_BUCKETS))
        width = math.ceil((end - start) / n)
        samples = await self.store.signal_series(vehicle, signal, start, end, MAX_SIGNAL_SAMPLES)
        groups: dict[int, list[float]] = {}
        for t, v in samples:
            groups.setdefault((t - start) // width, []).append(v)
        return {"vehicle": vehicle, "signal": signal, "from_ms": start, "to_ms": end,
                "bucket_ms": width, "samples": len(samples),
                "truncated": len(samples) >= MAX_SIGNAL_SAMPLES,
                "buckets": [{"start_ms": start + i * width, "n": len(vs), "min": min(vs),
                             "max": max(vs), "mean": round(statistics.fmean(vs), 4)}
                            for i, vs in sorted(groups.items())]}

    async def send_command(self, p: Principal, vehicle: str, name: str,
                           args: dict | None = None) -> dict:
        need(p, Role.DISPATCHER)
        await self._vehicle(p, vehicle)
        # the one check of the HTTP API too (backend/downlink.py): the registry, then the set
        # the vehicle advertised — over stdio `_send` only stores, so it must be here
        await check_command(self.store, vehicle, name, dict(args or {}))
        cid = await self._send(vehicle, name, dict(args or {}))
        await self.store.add_audit(self.clock(), p.name, "command.send", vehicle,
                                   {"id": cid, "name": name, "args": args or {}, "via": "mcp"})
        return {"id": cid, "vehicle": vehicle, "name": name, "state": "pending"}

    async def plan_routes(self, p: Principal, start: str, end: str,
                          vehicles: list[str] | None = None) -> dict:
        """A proposal for a shift; it changes nothing until a dispatcher approves it."""
        from ..dispatch.codec import parse_time
        from ..dispatch.matrix import SnapError
        from ..dispatch.model import Shift
        from ..dispatch.planner import PlanError
        from ..dispatch.planning import PlanningError
        from ..dispatch.solver_worker import PlanCancelled, PlannerBusy, PlanTimeout

        need(p, Role.DISPATCHER)
        if self.planning is None:
            raise Refused("planning runs in the backend: use its HTTP MCP endpoint (/mcp)")
        shift = Shift(parse_time(start, "start"), parse_time(end, "end"))
        if p.vehicles is not None:
            vehicles = sorted(set(vehicles or p.vehicles) & p.vehicles)
        try:
            kept = await self.planning.plan(shift, f"mcp:{p.name}", vehicles)
        except (PlannerBusy, PlanCancelled, PlanTimeout, PlanningError, PlanError,
                SnapError) as exc:
            raise Refused(str(exc)) from None
        prop, result = kept.proposal, kept.plan
        listed, routes = 0, []
        for r in result.routes:
            stops = list(r.job_ids[:max(0, MAX_PLAN_STOPS - listed)])
            listed += len(stops)
            routes.append({"vehicle": r.vehicle_id, "stops": stops,
                           "truncated": len(stops) < len(r.job_ids), "travel_s": r.travel_s,
                           "end_ms": r.end_ms})
        kinds: dict[str, int] = {}
        for c in prop.diff.changes:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        await self.store.add_audit(self.clock(), p.name, "dispatch.plan", prop.id,
                                   {"via": "mcp", "basis": prop.basis})
        return {"proposal_id": prop.id, "based_on_version": str(prop.based_on_version),
                "basis": prop.basis, "cost_s": result.cost_s, "routes": routes,
                "unassigned": [{"job_id": j, "reason": why}
                               for j, why in sorted(prop.unassigned.items())][:MAX_PLAN_STOPS],
                "changes": kinds, "approve": f"POST /api/dispatch/proposals/{prop.id}/approve",
                "status": "waiting for a dispatcher's approval"}

    async def route_etas(self, p: Principal, vehicle: str) -> dict:
        """The newest live ETAs of the vehicle's dispatched or active route (docs/dispatch.md,
        "Live ETAs"), and its open late-risk alerts."""
        await self._vehicle(p, vehicle)
        if self.etas is None:
            raise Refused("live ETAs run in the backend: use its HTTP MCP endpoint (/mcp)")
        tr = self.etas.tracker(vehicle)
        if tr is None:
            raise Refused(f"vehicle {vehicle} has no dispatched or active route")
        late = await self.store.list_alerts(AlertQuery(vehicle=vehicle, rule="late_risk",
                                                       state="open", limit=MAX_ALERTS))
        eta = tr.last.message() if tr.last is not None else None
        return {"vehicle": vehicle, "route_id": tr.route_id,
                "computed_ms": None if eta is None else eta["computed_ms"],
                "basis": "no position on the route yet" if eta is None else eta["basis"],
                "stops": [] if eta is None else eta["stops"][:MAX_PLAN_STOPS],
                "late_risk": [a.subject for a in late]}

    async def eta_what_if(self, p: Principal, vehicle: str, stops: list[str]) -> dict:
        """ETAs if the vehicle drove `stops` (job ids) in this order from its newest position:
        a question, never a change (changes go through plan_routes and a dispatcher)."""
        from ..dispatch.eta import route_eta
        from ..dispatch.live_eta import LiveEta
        from ..dispatch.matrix import SnapError

        await self._vehicle(p, vehicle)
        if self.etas is None:
            raise Refused("ETAs run in the backend: use its HTTP MCP endpoint (/mcp)")
        if not 1 <= len(stops) <= MAX_WHAT_IF_STOPS:
            raise Refused(f"stops: 1 to {MAX_WHAT_IF_STOPS} job ids")
        pos = next((r for r in await self.store.last_positions()
                    if r["vehicle_id"] == vehicle), None)
        if pos is None:
            raise Refused(f"vehicle {vehicle} has no position yet")
        jobs = []
        for jid in stops:
            rec = await self.store.job(jid)
            if rec is None:
                raise Refused(f"unknown job {jid!r}")
            jobs.append(rec.job)
        now = self.clock()
        try:
            eta = route_eta(pos["lat"], pos["lon"], max(now, pos["time_ms"]), jobs,
                            self.etas.travel)
        except SnapError as exc:
            raise Refused(str(exc)) from None
        msg = LiveEta("what-if", vehicle, pos["time_ms"], pos["lat"], pos["lon"],
                      eta).message()
        return {"vehicle": vehicle, "basis": msg["basis"], "stops": msg["stops"],
                "late": list(eta.late), "status": "a what-if: nothing was changed"}

    async def maintenance_status(self, p: Principal, vehicle: str | None = None,
                                 only_due: bool = False) -> dict:
        cfg = self.maintenance
        now = self.clock()
        vs = [await self._vehicle(p, vehicle)] if vehicle else await self._vehicles(p)
        out = []
        types = {} if cfg is None else await monitor.vehicle_types(self.store, cfg)
        for v in vs[:MAX_VEHICLES]:
            vid = v["vehicle_id"]
            services = [] if cfg is None else [
                s.as_json() for s in await monitor.service_status(
                    self.store, cfg, vid, v.get("created_ms") or 0, now, types)]
            codes = await monitor.trouble_codes(self.store, vid, 0, now + 1)
            due = [s for s in services if s["state"] in ("due", "overdue")]
            if only_due and not due:
                continue
            out.append({"vehicle": vid, "services": services, "due": bool(due),
                        "trouble_codes": codes[:MAX_CODES],
                        "open_codes": sum(c["state"] == "open" for c in codes)})
        health = [] if cfg is None or not cfg.health else [
            f for f in await monitor.signal_health(self.store, cfg, [v["vehicle_id"] for v in vs],
                                                   now) if f["drifted"]]
        return {"now_ms": now, "vehicles": out,
                "due_for_service": [x["vehicle"] for x in out if x["due"]],
                "signal_drift": health[:MAX_ALERTS]}

    async def _ids(self, p: Principal, vehicle: str | None) -> list[str]:
        if vehicle:
            return [(await self._vehicle(p, vehicle))["vehicle_id"]]
        return [v["vehicle_id"] for v in await self._vehicles(p) if v.get("revoked_ms") is None]

    async def action_letters(self, p: Principal, state: str | None = "dead",
                             vehicle: str | None = None) -> dict:
        """Vehicle actions the backend could not apply (GET /api/action-letters; admins)."""
        need(p, Role.ADMIN)
        if state is not None and state not in LETTER_STATES:
            raise Refused(f"state must be one of {', '.join(LETTER_STATES)}")
        if vehicle is not None:
            vehicle = (await self._vehicle(p, vehicle))["vehicle_id"]
        rows = await self.store.action_letters(state, vehicle, MAX_LETTERS + 1)
        return {"letters": rows[:MAX_LETTERS], "truncated": len(rows) > MAX_LETTERS}

    async def maintenance_due(self, p: Principal, state: str = "attention") -> dict:
        """The fleet's due list (GET /api/maintenance/due)."""
        states = {"attention": ("due", "overdue"), "all": ("overdue", "due", "unknown", "ok")}
        if state not in states:
            raise Refused("state must be attention or all")
        cfg = self.maintenance
        now = self.clock()
        vs = [v for v in await self._vehicles(p) if v.get("revoked_ms") is None]
        rows = [] if cfg is None else [s.as_json() for s in await monitor.fleet_due(
            self.store, cfg, vs, now) if s.state in states[state]]
        return {"now_ms": now, "due": rows[:MAX_ROWS], "truncated": len(rows) > MAX_ROWS}

    async def trouble_codes(self, p: Principal, vehicle: str | None = None,
                            status: str = "all") -> dict:
        """Trouble codes as a workflow over the last DTC_DAYS (GET /api/maintenance/dtcs)."""
        if status not in ("all", "active", "pending", "cleared"):
            raise Refused("status must be all, active, pending or cleared")
        now = self.clock()
        start = now - DTC_DAYS * 86_400_000
        per = await monitor.fleet_dtcs(self.store, self.maintenance or MaintenanceConfig(),
                                       await self._ids(p, None), start, now + 1)
        rows = [r for v, rs in per.items() if vehicle in (None, v) for r in rs
                if status in ("all", r["status"])]
        if vehicle:
            await self._vehicle(p, vehicle)
        return {"from_ms": start, "to_ms": now + 1, "dtcs": rows[:MAX_ROWS],
                "truncated": len(rows) > MAX_ROWS}

    async def maintenance_forecasts(self, p: Principal) -> dict:
        """Trend-to-threshold forecasts and peer deviations, each naming its method."""
        now = self.clock()
        rows = [] if self.maintenance is None else await monitor.forecasts(
            self.store, self.maintenance, await self._ids(p, None), now)
        return {"now_ms": now, "forecasts": rows[:MAX_ROWS]}

    async def driving_events(self, p: Principal, vehicle: str | None = None, since=None,
                             until=None, day=None, kind: str | None = None) -> dict:
        start, end = window(since, until, day, self.clock(), default_hours=7 * 24)
        queries.check_window(start, end)
        got = await driving_report.fleet_window(self.store, self.driving, await self._ids(
            p, vehicle), start, end)
        evs = [e for e in got["events"] if kind in (None, e["kind"])]
        return {"from_ms": start, "to_ms": end, "events": evs[:MAX_ROWS],
                "truncated": got["truncated"] or len(evs) > MAX_ROWS}

    async def driver_scorecards(self, p: Principal, by: str = "driver", since=None,
                                until=None) -> dict:
        if by not in ("driver", "vehicle"):
            raise Refused("by must be driver or vehicle")
        now = self.clock()
        end = queries.parse_time(until, now)
        start = queries.parse_time(since, driving_scores.week_start(end - 1)
                                   - 3 * driving_scores.WEEK_MS)
        queries.check_window(start, end)
        got = await driving_report.fleet_window(self.store, self.driving, await self._ids(
            p, None), start, end)
        rows = driving_scores.scorecards(got["events"], got["km"], by)
        return {"from_ms": start, "to_ms": end, "by": by, "scorecards": rows[:MAX_ROWS],
                "weights": driving_scores.WEIGHTS, "idle_weight": driving_scores.IDLE_WEIGHT}

    async def fuel(self, p: Principal, by: str = "vehicle", vehicle: str | None = None,
                   since=None, until=None, day=None) -> dict:
        if by not in ("trip", "day", "vehicle", "events"):
            raise Refused("by must be trip, day, vehicle or events")
        start, end = window(since, until, day, self.clock(), default_hours=7 * 24)
        queries.check_window(start, end)
        got = await driving_report.fuel_window(self.store, self.driving, await self._ids(
            p, vehicle), start, end)
        rows = (got["trips"] if by == "trip" else got["events"] if by == "events"
                else fuel_rules.summary(got["trips"], got["idle"], got["events"], by))
        return {"from_ms": start, "to_ms": end, "by": by, "rows": rows[:MAX_ROWS],
                "truncated": got["truncated"] or len(rows) > MAX_ROWS}

    async def geofences(self, p: Principal) -> dict:
        return {"geofences": [{"id": str(r["geofence_id"]), "name": r.get("name"),
                               "group": r.get("group"), "area": r.get("area"),
                               "circle": r.get("circle"),
                               "speed_limit_kmh": r.get("speed_limit_kmh")}
                              for r in await self.store.geofences()
                              if p.may_see_geofence(r.get("group"))]}

    # --- notification subscriptions (backend/notify/manage.py: the HTTP API's rules) --------

    async def _manage(self, fn, *args):
        from ..notify import manage

        try:
            return await fn(self.store, *args)
        except manage.Refused as exc:
            raise Refused(str(exc)) from None

    async def list_subscriptions(self, p: Principal, every: bool = False) -> dict:
        """GET /api/notifications/subscriptions[?all=true]."""
        from ..notify import manage

        return {"subscriptions": await self._manage(manage.list_subscriptions, p, every)}

    async def subscribe(self, p: Principal, body: dict) -> dict:
        """POST /api/notifications/subscriptions (audited)."""
        from ..notify import manage

        sub, secret = await self._manage(manage.subscribe, p, body, self.notify, self.clock())
        await self.store.add_audit(self.clock(), p.name, "notify.subscribe", str(sub["id"]),
                                   {"channel": sub["channel"], "group": sub["group"],
                                    "events": sub["events"], "via": "mcp"})
        return {"subscription": sub, **({"secret": secret} if secret else {})}

    async def unsubscribe(self, p: Principal, subscription_id: int) -> dict:
        """DELETE /api/notifications/subscriptions/{id} (audited)."""
        from ..notify import manage

        sub = await self._manage(manage.unsubscribe, p, subscription_id)
        await self.store.add_audit(self.clock(), p.name, "notify.unsubscribe", str(sub.id),
                                   {"via": "mcp"})
        return {"deleted": sub.id}

    async def alert_rules(self) -> dict:
        rules = self.rules.describe() if self.rules is not None else []
        m = self.maintenance
        return {"rules": rules, "maintenance": None if m is None else {
            "intervals": [i.__dict__ for i in m.intervals],
            "health": [h.__dict__ for h in m.health]}}
