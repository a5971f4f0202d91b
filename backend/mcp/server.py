"""The MCP server (official `mcp` SDK, MCPServer): fleet tools and resources for AI agents.

Each tool's input schema comes from its annotated parameters and its description from its
docstring (docs/mcp.md lists them). Who is asking: over HTTP the principal the backend's access
middleware resolved from the Bearer token (http.py puts it in the ASGI scope); over stdio the
one resolved once at start from the token given to `python -m backend mcp`.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from ..authz import Principal
from . import schemas
from .http import SCOPE_KEY
from .tools import DAY_WORDS, MAX_ALERTS, MAX_BUCKETS, MAX_ROUTE_POINTS, FleetTools, Refused

Vehicle = Annotated[str, Field(description="vehicle id, as list_vehicles shows it")]
Since = Annotated[str | None, Field(description="window start: epoch ms or ISO 8601 (UTC "
                                    "when naive); default 24 h before `until`")]
Until = Annotated[str | None, Field(description="window end: epoch ms or ISO 8601; default now")]
Day = Annotated[str | None, Field(description=f"a whole UTC day instead of since/until: "
                                  f"{' or '.join(DAY_WORDS)} or YYYY-MM-DD")]


def build_server(tools: FleetTools, stdio_principal: Principal | None = None) -> MCPServer:
    mcp = MCPServer("fleet-agent", instructions=(
        "Fleet telemetry: vehicles, positions, trips, geofences, alerts, CAN signals and "
        "maintenance. Times are epoch milliseconds (UTC); days are UTC days."))

    def who(ctx: Context) -> Principal:
        request = ctx.request_context.request
        principal = (request.scope.get(SCOPE_KEY) if request is not None
                     and hasattr(request, "scope") else stdio_principal)
        if principal is None:
            raise ToolError("authentication required")
        return principal

    async def call(ctx: Context, fn, *args, **kwargs) -> Any:
        try:
            return await fn(who(ctx), *args, **kwargs)
        except (Refused, ValueError) as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool()
    async def list_geofences(ctx: Context) -> schemas.Geofences:
        """The geofences you may see (your groups'; all when you see every vehicle): {geofences:
        [{id, name, group, area (GeoJSON), circle, speed_limit_kmh}]}."""
        return await call(ctx, tools.geofences)

    @mcp.tool()
    async def list_vehicles(ctx: Context) -> schemas.Vehicles:
        """The vehicles you may see. Returns {vehicles: [{id, revoked, last_seen_ms}],
        truncated}."""
        return await call(ctx, tools.list_vehicles)

    @mcp.tool()
    async def vehicle_state(vehicle: Vehicle, ctx: Context) -> schemas.VehicleState:
        """A vehicle now: {id, now_ms, position: {time_ms, lat, lon, speed_kmh, course_deg}|null,
        fix_age_s, can: {signal: {value, time_ms}}, open_alerts: [alert]}."""
        return await call(ctx, tools.vehicle_state, vehicle)

    @mcp.tool()
    async def route(vehicle: Vehicle, ctx: Context, since: Since = None, until: Until = None,
                    day: Day = None,
                    max_points: Annotated[int, Field(ge=1, le=MAX_ROUTE_POINTS)] = 200
                    ) -> schemas.Route:
        """Where a vehicle drove in a window, downsampled to at most max_points (first
        position per time bucket): {vehicle, from_ms, to_ms, points, step_ms,
        coordinates: [[lon, lat]], times_ms, speeds_kmh}."""
        return await call(ctx, tools.route, vehicle, since, until, day, max_points)

    @mcp.tool()
    async def trips(vehicle: Vehicle, ctx: Context, day: Day = None) -> schemas.Trips:
        """Trips and stops of a vehicle on one UTC day (default today): {vehicle, day,
        trips: [{start_ms, end_ms, distance_km, max_speed_kmh, from, to}], stops:
        [{start_ms, end_ms, duration_s, at}], distance_km, driving_s, stopped_s}."""
        return await call(ctx, tools.trips, vehicle, day)

    @mcp.tool()
    async def who_was_in_geofence(
            geofence: Annotated[str, Field(description="geofence name (e.g. Depot) or id")],
            ctx: Context, since: Since = None, until: Until = None, day: Day = None
    ) -> schemas.GeofencePresence:
        """Which vehicles were inside a geofence in a window (default: yesterday, UTC):
        {geofence: {id, name}, from_ms, to_ms, vehicles: [id], presence: [{vehicle,
        first_inside_ms, last_inside_ms, positions_inside}], entries: [{vehicle_id, time_ms,
        …}] (outside→inside transitions)}."""
        return await call(ctx, tools.who_was_in_geofence, geofence, since, until, day)

    @mcp.tool()
    async def alerts(ctx: Context, vehicle: str | None = None,
                     rule: Annotated[str | None, Field(description="e.g. overspeed, geofence, "
                                                       "dtc, service, signal_health")] = None,
                     state: Annotated[str | None, Field(pattern="^(open|closed)$")] = None,
                     limit: Annotated[int, Field(ge=1, le=MAX_ALERTS)] = 50) -> schemas.Alerts:
        """Alerts, newest first: {alerts: [{id, rule, vehicle, subject, start_ms, end_ms,
        peak, state, acknowledged_by, acknowledged_ms, lat, lon, detail}]}."""
        return await call(ctx, tools.alerts, vehicle, rule, state, limit)

    @mcp.tool()
    async def acknowledge_alert(alert_id: int, ctx: Context) -> schemas.Alert:
        """Acknowledge an alert (role dispatcher); returns the alert. A second
        acknowledgement keeps the first one's user and time."""
        return await call(ctx, tools.acknowledge_alert, alert_id)

    @mcp.tool()
    async def signal_history(
            vehicle: Vehicle,
            signal: Annotated[str, Field(description="CAN signal name, e.g. EngCoolantTemp")],
            ctx: Context, since: Since = None, until: Until = None, day: Day = None,
            buckets: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] = 48) -> schemas.SignalHistory:
        """A CAN signal over time in equal buckets: {vehicle, signal, from_ms, to_ms,
        bucket_ms, samples, truncated, buckets: [{start_ms, n, min, max, mean}]} (empty
        buckets are left out)."""
        return await call(ctx, tools.signal_history, vehicle, signal, since, until, day,
                          buckets)

    @mcp.tool()
    async def send_command(vehicle: Vehicle,
                           name: Annotated[str, Field(description="command name, e.g. ping",
                                                      min_length=1, max_length=64)],
                           ctx: Context, args: dict[str, Any] | None = None) -> schemas.CommandSent:
        """Send a downlink command to a vehicle (role dispatcher; audited). Returns {id,
        vehicle, name, state: pending}; the agent's answer shows in the HTTP API's
        GET /api/commands/{id}."""
        return await call(ctx, tools.send_command, vehicle, name, args)

    @mcp.tool()
    async def list_subscriptions(ctx: Context, every: Annotated[bool, Field(
            description="everyone's subscriptions (an admin); default your own")] = False
                                 ) -> schemas.Subscriptions:
        """Your notification subscriptions (docs/notifications.md): {subscriptions: [{id,
        owner, group, events, channel, target, tz, digest, label, …}]}."""
        return await call(ctx, tools.list_subscriptions, every)

    @mcp.tool()
    async def subscribe(ctx: Context, subscription: Annotated[dict[str, Any], Field(
            description="as POST /api/notifications/subscriptions takes it: events, channel "
            "(email, webhook, apprise, customer), target, and optionally group (an admin), "
            "rules, eta_change_min, tz, quiet, digest, digest_at, label")]) -> schemas.Subscribed:
        """Subscribe to job events and alerts (role viewer; for a vehicle group, or the
        customers' dispatch mails, an admin; audited). Returns {subscription, secret} (a
        webhook's signing secret, shown only here)."""
        return await call(ctx, tools.subscribe, subscription)

    @mcp.tool()
    async def unsubscribe(subscription_id: int, ctx: Context) -> schemas.Unsubscribed:
        """Delete a subscription of yours (an admin: anyone's; audited). Returns {deleted}."""
        return await call(ctx, tools.unsubscribe, subscription_id)

    @mcp.tool()
    async def plan_routes(
            start: Annotated[str, Field(description="shift start: epoch ms or ISO 8601 (UTC "
                                        "when naive)")],
            end: Annotated[str, Field(description="shift end, at most 24 h after start")],
            ctx: Context,
            vehicles: Annotated[list[str] | None, Field(
                description="plan only these vehicles (default: all you may see)",
                max_length=200)] = None) -> schemas.PlanProposal:
        """Plan a shift's routes on the road network (role dispatcher; audited): the
        unassigned jobs and the not-started ones on the vehicles' routes. Returns a proposal
        {proposal_id, based_on_version, basis, cost_s, routes: [{vehicle, stops: [job id],
        truncated, travel_s, end_ms}], unassigned: [{job_id, reason}], changes: {kind: n},
        approve, status}. Nothing changes until a dispatcher approves it (HTTP API); if the
        dispatch state moves on meanwhile, the approval is refused."""
        return await call(ctx, tools.plan_routes, start, end, vehicles)

    @mcp.tool()
    async def route_etas(vehicle: Vehicle, ctx: Context) -> schemas.RouteEtas:
        """Live ETAs of a vehicle's dispatched or active route, recomputed from its position
        as it drives: {vehicle, route_id, computed_ms, basis, stops: [{job_id, eta_ms,
        begin_ms, departure_ms, wait_s, spread_s (±), confidence (0–1), late}], late_risk:
        [job id with an open late-risk alert]}. Times are ms since 1970 UTC."""
        return await call(ctx, tools.route_etas, vehicle)

    @mcp.tool()
    async def eta_what_if(vehicle: Vehicle, ctx: Context,
                          stops: Annotated[list[str], Field(
                              description="job ids in the order to visit them",
                              min_length=1, max_length=200)]) -> schemas.WhatIfEtas:
        """What-if: the ETAs if the vehicle drove these jobs in this order from its newest
        position: {vehicle, basis, stops: [{job_id, eta_ms, begin_ms, departure_ms, wait_s,
        spread_s, confidence, late}], late: [job id], status}. Changes nothing (a new plan
        goes through plan_routes and a dispatcher's approval)."""
        return await call(ctx, tools.eta_what_if, vehicle, stops)

    @mcp.tool()
    async def maintenance_status(ctx: Context, vehicle: str | None = None,
                                 only_due: bool = False) -> schemas.MaintenanceStatus:
        """Service intervals, trouble codes and signal drift: {now_ms, due_for_service: [id],
        vehicles: [{vehicle, due, services: [{interval, by, every, used, remaining,
        state: ok|due|overdue|unknown, since_ms, source}], trouble_codes: [{code, controller,
        state: open|closed, first_ms, last_ms, count}], open_codes}], signal_drift:
        [{vehicle, signal, band, against: own|fleet, z, max_z, …statistics}]}."""
        return await call(ctx, tools.maintenance_status, vehicle, only_due)

    @mcp.tool()
    async def maintenance_due(ctx: Context, state: Annotated[str, Field(
            description="attention (due and overdue, default) or all")] = "attention"
            ) -> schemas.DueList:
        """The fleet's due list, most urgent first: {now_ms, due: [{vehicle, interval, by,
        every, used, remaining, state, since_ms, source, source_label}], truncated}.
        source_label says when a distance is GPS-integrated (no odometer)."""
        return await call(ctx, tools.maintenance_due, state)

    @mcp.tool()
    async def trouble_codes(ctx: Context, vehicle: str | None = None, status: Annotated[
            str, Field(description="all, active, pending or cleared")] = "all"
            ) -> schemas.TroubleCodes:
        """Trouble codes as a workflow over the last 90 days: {dtcs: [{vehicle, code, status:
        active|pending|cleared, first_ms, last_ms, cleared_ms, episodes, recurrences,
        per_1000_km, other_vehicles}]}."""
        return await call(ctx, tools.trouble_codes, vehicle, status)

    @mcp.tool()
    async def action_letters(ctx: Context, state: Annotated[str | None, Field(
            description="failing, dead, replayed or refused; null: all")] = "dead",
            vehicle: str | None = None) -> schemas.ActionLetters:
        """Vehicle actions the backend could not apply, the latest first (admins; replay one
        with POST /api/action-letters/{vehicle}/{epoch}/{seq}/replay): {letters: [{vehicle_id,
        epoch, seq, key, kind, action, taken_ms, state, error, failures, first_ms, last_ms,
        replayed_ms, outcome}], truncated}."""
        return await call(ctx, tools.action_letters, state, vehicle)

    @mcp.tool()
    async def maintenance_forecasts(ctx: Context) -> schemas.Forecasts:
        """Predictions without a trained model, each with its method: {forecasts: [{vehicle,
        kind: trend|peer, signal, method, text ("resting battery voltage reaches 12.0 V in
        about 9 days"), days_to_threshold, slope_per_day | band, z}]}."""
        return await call(ctx, tools.maintenance_forecasts)

    @mcp.tool()
    async def driving_events(ctx: Context, vehicle: str | None = None, since: Since = None,
                             until: Until = None, day: Day = None,
                             kind: Annotated[str | None, Field(
                                 description="harsh_accel, harsh_brake, harsh_corner, idle "
                                             "or overspeed")] = None) -> schemas.DrivingEvents:
        """Driving events (default the last 7 days, at most 31): {events: [{vehicle, driver,
        kind, start_ms, end_ms, peak, unit, threshold, lat, lon, source}]}."""
        return await call(ctx, tools.driving_events, vehicle, since, until, day, kind)

    @mcp.tool()
    async def driver_scorecards(ctx: Context, by: Annotated[str, Field(
            description="driver or vehicle")] = "driver", since: Since = None,
            until: Until = None) -> schemas.Scorecards:
        """Weekly scorecards (default this ISO week and the three before): {scorecards:
        [{week_ms, driver|vehicle, km, score (0..100), harsh_*, overspeed, idle, idle_min,
        per_100_km}], weights}."""
        return await call(ctx, tools.driver_scorecards, by, since, until)

    @mcp.tool()
    async def fuel(ctx: Context, by: Annotated[str, Field(
            description="vehicle (the fleet ranking), day, trip, or events (refuels and "
                        "drops)")] = "vehicle", vehicle: str | None = None,
            since: Since = None, until: Until = None, day: Day = None) -> schemas.Fuel:
        """Fuel (default the last 7 days): consumption in L/100 km per vehicle (ranked), day
        or trip (from the fuel rate or the tank level), idle litres, or refuels and drops
        (theft, leaks) with litres and time: {rows: [...]}."""
        return await call(ctx, tools.fuel, by, vehicle, since, until, day)

    @mcp.resource("fleet://alert-rules", mime_type="application/json")
    async def alert_rules() -> dict[str, Any]:
        """The alert rules in force and the maintenance intervals and health checks."""
        return await tools.alert_rules()

    return mcp
