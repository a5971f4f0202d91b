"""Driving events from stored readings: harsh acceleration, braking and cornering, idling.

Pure and order-free: the detectors take the window's positions and CAN frames in any order,
with duplicates (a backfill, a retransmission), sort and de-duplicate them by device time, and
only then look. So the same readings delivered late or shuffled give the same events, as the
alert rules do (docs/alerts.md).

- Longitudinal: the central difference of speed over consecutive positions (m/s²), or the CAN
  `LongitudinalAcceleration` when a DBC provides it. A run at or beyond the class's threshold
  is one event at its first sample, with its peak.
- Cornering: lateral acceleration v·ω (speed times the rate of change of course) above
  `MIN_CORNER_KMH`, or the CAN `LateralAcceleration`.
- Idling: the engine on (engine speed ≥ `ENGINE_ON_RPM`) and standing (speed <
  `STANDING_KMH`) for more than the class's `idle_minutes`, with the fuel it burnt when a
  fuel rate is on the bus.
"""

from __future__ import annotations

import bisect
import math

from geostream.signalnames import NAMES, SignalNames

from .thresholds import Thresholds

# Two positions further apart than this are not one manoeuvre (a gap, a tunnel).
MAX_GAP_MS = 3_000
# Samples of one run closer than this belong to the same event (noise dips inside a brake).
MERGE_MS = 2_000
# Below this speed, GPS course is noise: no cornering is computed.
MIN_CORNER_KMH = 20.0
STANDING_KMH = 2.0
ENGINE_ON_RPM = 300.0
# An idling run survives gaps in the CAN samples up to this (a parked agent samples slower).
IDLE_MAX_GAP_MS = 120_000
# A CAN acceleration is taken as given; a value beyond this is a decoding error, not a car.
MAX_PLAUSIBLE_MS2 = 15.0


# CAN signal names (geostream/signalnames.py, the one table: J1939 names of the shipped DBC);
# `Signals.driving()` are the ones the detectors read
Signals = SignalNames
DEFAULT_SIGNALS = NAMES


def _number(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def clean_positions(positions: list[dict]) -> list[dict]:
    """Time-ordered, one per device time (the first of duplicates by (epoch, seq)), with a
    finite speed."""
    out: dict[int, dict] = {}
    for p in sorted(positions, key=lambda p: (p["time_ms"], p.get("epoch") or 0,
                                              p.get("seq") or 0)):
        if p["time_ms"] not in out and _number(p.get("speed_kmh")) is not None:
            out[p["time_ms"]] = p
    return list(out.values())


def clean_frames(frames: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Time-ordered, the signals of duplicate device times merged (first value wins), so a
    frame delivered twice, or the same second in two readings, counts once."""
    merged: dict[int, dict] = {}
    for t, sig in sorted(frames, key=lambda f: f[0]):
        row = merged.setdefault(t, {})
        for k, v in sig.items():
            row.setdefault(k, v)
    return sorted(merged.items())


def _event(kind: str, start: dict, end_ms: int, peak: float, at: dict, threshold: float,
           source: str) -> dict:
    return {"kind": kind, "start_ms": start["time_ms"], "end_ms": end_ms,
            "peak": round(peak, 2), "unit": "m/s²", "threshold": threshold, "source": source,
            "lat": at.get("lat"), "lon": at.get("lon"), "speed_kmh": at.get("speed_kmh")}


def _runs(samples: list[tuple[dict, float]], limit: float, kind: str, source: str
          ) -> list[dict]:
    """Events of consecutive samples with |value| ≥ limit (one sign), merged within
    MERGE_MS; `samples` are (position-like dict with time_ms, value) in time order."""
    out: list[dict] = []
    run: list[tuple[dict, float]] = []

    def flush():
        if run:
            peak_at, peak = max(run, key=lambda r: abs(r[1]))
            out.append(_event(kind, run[0][0], run[-1][0]["time_ms"], abs(peak), peak_at,
                              limit, source))
            run.clear()

    for at, value in samples:
        if abs(value) >= limit:
            if run and at["time_ms"] - run[-1][0]["time_ms"] > MERGE_MS:
                flush()
            run.append((at, value))
    flush()
    return out


def _gps_accels(pos: list[dict]) -> tuple[list, list]:
    """(longitudinal, lateral) accelerations at each inner position, m/s²."""
    lon_acc, lat_acc = [], []
    for a, b, c in zip(pos, pos[1:], pos[2:], strict=False):
        dt = (c["time_ms"] - a["time_ms"]) / 1000
        if c["time_ms"] - b["time_ms"] > MAX_GAP_MS or b["time_ms"] - a["time_ms"] > MAX_GAP_MS \
                or dt <= 0:
            continue
        lon_acc.append((b, (c["speed_kmh"] - a["speed_kmh"]) / 3.6 / dt))
        ca, cc = _number(a.get("course_deg")), _number(c.get("course_deg"))
        if ca is not None and cc is not None and b["speed_kmh"] >= MIN_CORNER_KMH:
            turn = (cc - ca + 180) % 360 - 180  # degrees, the short way round
            lat_acc.append((b, b["speed_kmh"] / 3.6 * math.radians(turn) / dt))
    return lon_acc, lat_acc


def position_at(pos: list[dict], times: list[int], t: int) -> dict:
    """The position nearest before `t` (or the first), with `t` as its time."""
    i = max(0, bisect.bisect_right(times, t) - 1)
    p = pos[i] if pos else {}
    return {**p, "time_ms": t}


def _can_accels(frames, sig: Signals, pos, times) -> tuple[list, list]:
    lon_acc, lat_acc = [], []
    for t, s in frames:
        for key, out in ((sig.long_acc, lon_acc), (sig.lat_acc, lat_acc)):
            v = _number(s.get(key))
            if v is not None and abs(v) <= MAX_PLAUSIBLE_MS2:
                out.append((position_at(pos, times, t), v))
    return lon_acc, lat_acc


def harsh(positions: list[dict], frames: list[tuple[int, dict]], th: Thresholds,
          sig: Signals = DEFAULT_SIGNALS) -> list[dict]:
    """Harsh acceleration, braking and cornering events, in time order. CAN accelerations
    replace the GPS-derived ones when the window has them (per axis)."""
    pos = clean_positions(positions)
    frames = clean_frames(frames)
    times = [p["time_ms"] for p in pos]
    g_lon, g_lat = _gps_accels(pos)
    c_lon, c_lat = _can_accels(frames, sig, pos, times)
    lon, lon_src = (c_lon, "can") if c_lon else (g_lon, "gps")
    lat, lat_src = (c_lat, "can") if c_lat else (g_lat, "gps")
    events = (_runs([(a, v) for a, v in lon if v > 0], th.accel_ms2, "harsh_accel", lon_src)
              + _runs([(a, v) for a, v in lon if v < 0], th.brake_ms2, "harsh_brake", lon_src)
              + _runs(lat, th.corner_ms2, "harsh_corner", lat_src))
    return sorted(events, key=lambda e: (e["start_ms"], e["kind"]))


def idling(positions: list[dict], frames: list[tuple[int, dict]], th: Thresholds,
           sig: Signals = DEFAULT_SIGNALS) -> list[dict]:
    """Idling events: engine on and standing for more than `th.idle_minutes`, with where,
    how long and the fuel burnt (litres, from the fuel rate in L/h when present)."""
    pos = clean_positions(positions)
    times = [p["time_ms"] for p in pos]
    out: list[dict] = []
    run: list[tuple[int, float | None]] = []

    def flush():
        if len(run) >= 2 and run[-1][0] - run[0][0] > th.idle_minutes * 60_000:
            fuel = 0.0
            has_rate = False
            for (t1, r1), (t2, _) in zip(run, run[1:], strict=False):
                if r1 is not None:
                    has_rate = True
                    fuel += r1 * (t2 - t1) / 3_600_000
            at = position_at(pos, times, run[0][0])
            out.append({"kind": "idle", "start_ms": run[0][0], "end_ms": run[-1][0],
                        "peak": round((run[-1][0] - run[0][0]) / 60_000, 1), "unit": "min",
                        "threshold": th.idle_minutes, "source": "can",
                        "fuel_l": round(fuel, 2) if has_rate else None,
                        "lat": at.get("lat"), "lon": at.get("lon"), "speed_kmh": 0.0})
        run.clear()

    for t, s in clean_frames(frames):
        rpm = _number(s.get(sig.engine_speed))
        if rpm is None:
            continue
        speed = _number(s.get(sig.wheel_speed))
        if speed is None:  # no wheel speed on the bus: the GPS's, if fresh
            i = bisect.bisect_right(times, t) - 1
            speed = pos[i]["speed_kmh"] if i >= 0 and t - times[i] <= MAX_GAP_MS * 3 else None
        idle = rpm >= ENGINE_ON_RPM and speed is not None and speed < STANDING_KMH
        if not idle or (run and t - run[-1][0] > IDLE_MAX_GAP_MS):
            flush()
        if idle:
            run.append((t, _number(s.get(sig.fuel_rate))))
    flush()
    return out


def driver_at(frames: list[tuple[int, dict]], sig: Signals = DEFAULT_SIGNALS
              ) -> list[tuple[int, str]]:
    """(time, driver id) whenever the CAN driver identification changes (tachograph/J1939
    DI), in time order: who drove from then on."""
    out: list[tuple[int, str]] = []
    for t, s in clean_frames(frames):
        d = s.get(sig.driver)
        if isinstance(d, str | int) and not isinstance(d, bool) and str(d).strip():
            d = str(d).strip()[:64]
            if not out or out[-1][1] != d:
                out.append((t, d))
    return out


def who(changes: list[tuple[int, str]], t: int) -> str | None:
    """The driver at `t` from driver_at()'s changes."""
    i = bisect.bisect_right([c[0] for c in changes], t) - 1
    return changes[i][1] if i >= 0 else None
