"""Reports people receive (docs/notifications.md, "Reports"): a daily or weekly summary of the
fleet (or a group) per vehicle — distance, driving and idle time, stops done, late and failed,
alerts — as CSV and as a PDF with charts, e-mailed on a schedule by the lease holder.

`summarise` (pure) turns positions, job transitions and alerts into rows; `render_csv` and
`render_pdf` write them (matplotlib draws the charts and writes the PDF itself: one library,
the `reports` extra); `gather` reads a period from the store; `report_period` (pure) says which
period is due at `now`."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..dispatch.model import JobState
from ..store.rows import AlertQuery

# Moving faster than this is driving; slower with the engine's positions still coming is idle
# (GNSS wander at a standstill reads 1-3 km/h).
MOVING_KMH = 5.0
# A gap between two positions longer than this is not counted as driving or idle (the vehicle
# was off or out of coverage; we do not know what it did).
MAX_GAP_S = 300
# The most of each source read for one report: a day of a large fleet fits, a runaway does not.
MAX_POSITIONS_PER_VEHICLE = 200_000
MAX_TRANSITIONS = 200_000
MAX_ALERTS = 50_000
PERIODS = {"daily": 1, "weekly": 7}
CSV_COLUMNS = ("vehicle", "distance_km", "driving_h", "idle_h", "stops_done", "late", "failed",
               "alerts")


@dataclass
class VehicleDay:
    vehicle: str
    distance_km: float = 0.0
    driving_s: float = 0.0
    idle_s: float = 0.0
    stops_done: int = 0
    late: int = 0
    failed: int = 0
    alerts: int = 0

    def row(self) -> list:
        return [self.vehicle, round(self.distance_km, 2), round(self.driving_s / 3600, 2),
                round(self.idle_s / 3600, 2), self.stops_done, self.late, self.failed,
                self.alerts]


@dataclass
class Report:
    title: str
    start_ms: int
    end_ms: int
    tz: str
    vehicles: list[VehicleDay] = field(default_factory=list)

    def totals(self) -> VehicleDay:
        t = VehicleDay("all")
        for v in self.vehicles:
            t.distance_km += v.distance_km
            t.driving_s += v.driving_s
            t.idle_s += v.idle_s
            t.stops_done += v.stops_done
            t.late += v.late
            t.failed += v.failed
            t.alerts += v.alerts
        return t


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(min(1.0, a)))


def movement(positions: list[dict]) -> tuple[float, float, float]:
    """(km, driving s, idle s) of time-ordered positions (time_ms, lat, lon, speed_kmh)."""
    km = driving = idle = 0.0
    for a, b in zip(positions, positions[1:], strict=False):
        dt = (b["time_ms"] - a["time_ms"]) / 1000
        if dt <= 0 or dt > MAX_GAP_S:
            continue
        d = _metres(a["lat"], a["lon"], b["lat"], b["lon"])
        speed = a.get("speed_kmh")
        moving = (speed if speed is not None else d / dt * 3.6) >= MOVING_KMH
        if moving:
            km += d / 1000
            driving += dt
        else:
            idle += dt
    return km, driving, idle


def summarise(title: str, start_ms: int, end_ms: int, tz: str,
              positions: dict[str, list[dict]], transitions: list[tuple], alerts: list,
              windows: dict[str, int | None]) -> Report:
    """The report of [start, end): `transitions` as (transition, vehicle or None), `windows`
    job id → its latest allowed arrival (None: no window), for lateness."""
    rows: dict[str, VehicleDay] = {v: VehicleDay(v) for v in positions}
    for v, pts in positions.items():
        rows[v].distance_km, rows[v].driving_s, rows[v].idle_s = movement(pts)
    arrived: dict[str, int] = {}
    for t, vehicle in transitions:
        if t.to_state is JobState.ARRIVED:
            arrived[t.job_id] = t.at_ms
        if not start_ms <= t.at_ms < end_ms or vehicle is None:
            continue
        r = rows.setdefault(vehicle, VehicleDay(vehicle))
        if t.to_state is JobState.COMPLETED:
            r.stops_done += 1
            due = windows.get(t.job_id)
            if due is not None and arrived.get(t.job_id, t.at_ms) > due:
                r.late += 1
        elif t.to_state is JobState.FAILED:
            r.failed += 1
    for a in alerts:
        if start_ms <= a.start_ms < end_ms and a.state != "retracted":
            rows.setdefault(a.vehicle_id, VehicleDay(a.vehicle_id)).alerts += 1
    return Report(title, start_ms, end_ms, tz, [rows[v] for v in sorted(rows)])


def render_csv(report: Report) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for v in report.vehicles:
        w.writerow(v.row())
    w.writerow(report.totals().row())
    return out.getvalue().encode()


def _period_text(report: Report) -> str:
    zone = ZoneInfo(report.tz)
    a = datetime.fromtimestamp(report.start_ms / 1000, zone)
    b = datetime.fromtimestamp(report.end_ms / 1000, zone) - timedelta(seconds=1)
    return (a.strftime("%Y-%m-%d") if a.date() == b.date()
            else f"{a:%Y-%m-%d} – {b:%Y-%m-%d}") + f" ({report.tz})"


def figure(report: Report):
    """One A4 page: the title and period, two charts (distance, and driving vs idle hours per
    vehicle), and the table."""
    from matplotlib.figure import Figure  # the `reports` extra; no pyplot state

    fig = Figure(figsize=(8.27, 11.69), dpi=100)
    fig.suptitle(f"{report.title}\n{_period_text(report)}", fontsize=14)
    names = [v.vehicle for v in report.vehicles] or ["(no vehicles)"]
    ax1, ax2, ax3 = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3, 3, 4]})
    ax1.bar(names, [v.distance_km for v in report.vehicles] or [0], color="#2b6cb0")
    ax1.set_ylabel("km")
    ax1.set_title("Distance driven")
    drive = [v.driving_s / 3600 for v in report.vehicles] or [0]
    idle = [v.idle_s / 3600 for v in report.vehicles] or [0]
    ax2.bar(names, drive, label="driving", color="#38a169")
    ax2.bar(names, idle, bottom=drive, label="idle", color="#ed8936")
    ax2.set_ylabel("hours")
    ax2.set_title("Driving and idle time")
    ax2.legend(loc="upper right")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax3.axis("off")
    rows = [v.row() for v in report.vehicles] + [report.totals().row()]
    table = ax3.table(cellText=[[str(c) for c in r] for r in rows],
                      colLabels=["vehicle", "km", "driving h", "idle h", "stops", "late",
                                 "failed", "alerts"], loc="upper center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    fig.subplots_adjust(hspace=0.5, top=0.9)
    return fig


def render_pdf(report: Report) -> bytes:
    out = io.BytesIO()
    figure(report).savefig(out, format="pdf")
    return out.getvalue()


def render_png(report: Report) -> bytes:
    """The same page as an image (what the PDF shows; for looking at it in a test or a chat)."""
    out = io.BytesIO()
    figure(report).savefig(out, format="png")
    return out.getvalue()


def report_period(every: str, at: time, tz: str, now_ms: int) -> tuple[int, int]:
    """The newest complete period at `now_ms` whose report is due: [start, end) in ms, the end
    being the latest `at` (local) not after now (weekly: the latest Monday's)."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    end = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if end > local:
        end = end - timedelta(days=1)
    if every == "weekly":
        end = end - timedelta(days=end.weekday())
    end = end.replace(tzinfo=None).replace(tzinfo=zone)
    start = (end - timedelta(days=PERIODS[every])).replace(tzinfo=None).replace(tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


async def gather(store, title: str, start_ms: int, end_ms: int, tz: str,
                 vehicles: frozenset[str] | None = None) -> Report:
    """Read [start, end) of the fleet (or only `vehicles`) from the store and summarise it."""
    ids = [v["vehicle_id"] for v in await store.list_vehicles()
           if vehicles is None or v["vehicle_id"] in vehicles]
    positions = {v: await store.route(v, start_ms, end_ms, limit=MAX_POSITIONS_PER_VEHICLE)
                 for v in ids}
    routes: dict[str, str | None] = {}
    transitions, seq = [], 0
    while len(transitions) < MAX_TRANSITIONS:
        batch = await store.transitions_after(seq, 5000)
        if not batch:
            break
        for s, t in batch:
            seq = s
            if t.at_ms >= end_ms:
                continue
            if t.route_id is not None and t.route_id not in routes:
                r = await store.dispatch_route(t.route_id)
                routes[t.route_id] = None if r is None else r.vehicle_id
            vehicle = routes.get(t.route_id) if t.route_id else None
            if vehicles is not None and vehicle not in vehicles:
                continue
            transitions.append((t, vehicle))
    windows: dict[str, int | None] = {}
    for t, _ in transitions:
        if t.to_state is JobState.COMPLETED and t.job_id not in windows:
            rec = await store.job(t.job_id)
            ends = [w.end_ms for w in rec.job.windows] if rec is not None else []
            windows[t.job_id] = max(ends) if ends else None
    alerts = await store.list_alerts(AlertQuery(vehicles=vehicles, from_ms=start_ms,
                                                to_ms=end_ms, limit=MAX_ALERTS))
    return summarise(title, start_ms, end_ms, tz, positions, transitions, alerts, windows)
