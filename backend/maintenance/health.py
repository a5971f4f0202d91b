"""Signal health: a vehicle's recent values against its own baseline and against its fleet.

Explainable statistics only: per condition band (e.g. coolant temperature per 10 % of engine
load, or battery voltage with the engine off) the median and the median absolute deviation
(MAD, scaled by 1.4826 to estimate a standard deviation) of the baseline window, and a robust
z-score of the recent window's median against them. Median/MAD rather than mean/stddev: one
warm-up minute or a sensor glitch moves a mean, not a median. Pure: samples in, findings out.
"""

from __future__ import annotations

import bisect
import statistics

from .config import HealthCheck

MAD_TO_SIGMA = 1.4826  # MAD × this estimates σ of a normal distribution
# A flat baseline (MAD 0, e.g. a quantised 1 °C signal) would make any change infinite: the
# scale is at least this fraction of the baseline's magnitude.
MIN_SCALE_FRACTION = 0.01
# A condition reading older than this says nothing about a later sample (the engine may have
# changed load, or stopped).
CONDITION_MAX_AGE_MS = 60_000
FLEET_METHOD = ("robust z-score of the vehicle's median against its peers' medians "
                "(median, MAD) under the same conditions")
# Fleet comparison needs at least this many vehicles in the band, this one included.
MIN_FLEET = 3


def condition(samples: list[tuple[int, float]], cond: list[tuple[int, float]] | None,
              check: HealthCheck) -> list[tuple[int, float, str]]:
    """(time, value, band) for each sample whose condition holds; cond is time-ordered."""
    if cond is None:
        return [(t, v, "all") for t, v in samples]
    times = [t for t, _ in cond]
    out = []
    for t, v in samples:
        i = bisect.bisect_right(times, t) - 1
        if i < 0 or t - times[i] > CONDITION_MAX_AGE_MS:
            continue
        c = cond[i][1]
        if check.band_signal:
            lo = int(c // check.band_width) * check.band_width
            out.append((t, v, f"{check.band_signal} {lo:g}..{lo + check.band_width:g}"))
        elif c < check.rest_below:
            out.append((t, v, f"{check.rest_signal} < {check.rest_below:g}"))
    return out


def condition_bands(samples: list[tuple[int, float]], conds: dict[str, list[tuple[int, float]]],
                    check: HealthCheck) -> list[tuple[int, float, str]]:
    """(time, value, band) for each sample with a fresh reading of every `check.bands` signal;
    the band names each condition's range, e.g. "WheelBasedVehicleSpeed 80..100,
    AmbientAirTemp 10..20": like is compared with like."""
    times = {sig: [t for t, _ in conds.get(sig, [])] for sig, _ in check.bands}
    out = []
    for t, v in samples:
        parts = []
        for sig, width in check.bands:
            i = bisect.bisect_right(times[sig], t) - 1
            if i < 0 or t - times[sig][i] > CONDITION_MAX_AGE_MS:
                break
            lo = int(conds[sig][i][1] // width) * width
            parts.append(f"{sig} {lo:g}..{lo + width:g}")
        else:
            out.append((t, v, ", ".join(parts)))
    return out


def robust(values: list[float]) -> dict:
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return {"n": len(values), "median": round(med, 3), "mad": round(mad, 3),
            "mean": round(statistics.fmean(values), 3),
            "stddev": round(statistics.pstdev(values), 3)}


def _z(value: float, center: float, mad: float) -> float:
    scale = max(MAD_TO_SIGMA * mad, MIN_SCALE_FRACTION * abs(center), 1e-9)
    return (value - center) / scale


def own_drift(vehicle: str, check: HealthCheck, rows: list[tuple[int, float, str]],
              recent_from_ms: int) -> list[dict]:
    """Per band: the recent median's robust z against the vehicle's own earlier values."""
    bands: dict[str, tuple[list[float], list[float]]] = {}
    for t, v, band in rows:
        base, recent = bands.setdefault(band, ([], []))
        (recent if t >= recent_from_ms else base).append(v)
    out = []
    for band, (base, recent) in sorted(bands.items()):
        if len(base) < check.min_samples or len(recent) < check.min_samples:
            continue
        b, r = robust(base), robust(recent)
        z = _z(r["median"], b["median"], b["mad"])
        out.append({"vehicle": vehicle, "signal": check.signal, "band": band,
                    "against": "own", "baseline": b, "recent": r, "z": round(z, 2),
                    "max_z": check.max_z, "drifted": abs(z) > check.max_z})
    return out


def fleet_drift(check: HealthCheck, recent: dict[str, dict[str, list[float]]]) -> list[dict]:
    """recent[vehicle][band] = values → per vehicle and band, its median's robust z against
    the other vehicles' medians in the same band."""
    medians: dict[str, dict[str, float]] = {}
    for vehicle, bands in recent.items():
        for band, values in bands.items():
            if len(values) >= check.min_samples:
                medians.setdefault(band, {})[vehicle] = statistics.median(values)
    out = []
    for band, per in sorted(medians.items()):
        if len(per) < MIN_FLEET:
            continue
        for vehicle, med in sorted(per.items()):
            others = [m for v, m in per.items() if v != vehicle]
            center = statistics.median(others)
            mad = statistics.median(abs(m - center) for m in others)
            z = _z(med, center, mad)
            out.append({"vehicle": vehicle, "signal": check.signal, "band": band,
                        "against": "fleet", "method": FLEET_METHOD, "median": round(med, 3),
                        "fleet": {"vehicles": len(others), "median": round(center, 3),
                                  "mad": round(mad, 3)},
                        "z": round(z, 2), "max_z": check.max_z,
                        "drifted": abs(z) > check.max_z})
    return out
