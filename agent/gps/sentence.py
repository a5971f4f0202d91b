"""Sans-IO sentence validation: one candidate line in, one normalised `Sentence` or a reject
reason out. Checksum and address checks are ours (cheap, strict); field splitting is
pynmea2's; field values are then checked strictly here, because pynmea2 is lenient with
them (it accepts minutes >= 60, unparsable times, NaN)."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import pynmea2

from .framing import nmea_checksum

# GNSS talkers we accept: GPS, multi-constellation, GLONASS, Galileo, BeiDou (both spellings).
TALKERS = frozenset({"GP", "GN", "GL", "GA", "GB", "BD"})
# Sentences that carry position, time, date, motion or fix quality; others are skipped unparsed.
USED = frozenset({"GGA", "RMC", "GNS", "VTG", "GSA", "GLL", "ZDA"})
KNOTS_TO_KMH = 1.852
# RMC's two-digit year: GPS time began in 1980, so 80-99 are 1980-1999 (a receiver still on
# its first week-number epoch); rollover.py moves such dates forward.
GPS_EPOCH_YY = 80
# GNS/RMC/GLL/VTG mode indicator -> GGA-style quality; N (no fix), M (manual), S (simulator)
# are not positions a vehicle was really at.
MODE_TO_QUALITY = {"A": 1, "D": 2, "P": 1, "R": 4, "F": 5, "E": 6}

_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)(?:\.(\d+))?")
_ANGLE = re.compile(r"(\d+)(\d\d(?:\.\d+)?)")
_NUM = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_INT = re.compile(r"\d{1,3}")


class Reject(Exception):
    """A line or sentence is unusable; `args[0]` names the counter to increment."""


@dataclass(slots=True)
class Sentence:
    """What one sentence says about the current epoch; None means "not stated"."""

    kind: str
    talker: str
    time_ms: int | None = None  # milliseconds since UTC midnight
    date: dt.date | None = None
    lat: float | None = None
    lon: float | None = None
    valid: bool | None = None  # the sentence's own fix status
    quality: int | None = None
    mode: int | None = None
    sats: int | None = None
    hdop: float | None = None
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None


def check_line(line: bytes, require_checksum: bool = True) -> str:
    """Validate framing and checksum of `$...` and return its text without the checksum.
    Raises `Reject` with the counter name on failure."""
    star = line.rfind(b"*")
    if star < 0:
        if require_checksum:
            raise Reject("no_checksum")
        body = line[1:]
    else:
        if star != len(line) - 3:
            raise Reject("bad_checksum")
        try:
            want = int(line[star + 1 :], 16)
        except ValueError:
            raise Reject("bad_checksum") from None
        body = line[1:star]
        if nmea_checksum(body) != want:
            raise Reject("bad_checksum")
    return "$" + body.decode("ascii")


def parse_sentence(text: str) -> Sentence:
    """Turn a checksum-verified `$TTSSS,...` text into a Sentence, or raise Reject."""
    comma = text.find(",")
    address = text[1:comma] if comma > 0 else text[1:]
    if address.startswith("P") or address[2:] not in USED:
        raise Reject("ignored")
    talker, kind = address[:2], address[2:]
    if talker not in TALKERS:
        raise Reject("unknown_talker")
    try:
        msg = pynmea2.parse(text)
    except Exception:  # a third-party parser on hostile input: any failure is a bad sentence
        raise Reject("bad_sentence") from None
    try:
        return _EXTRACT[kind](msg, Sentence(kind, talker))
    except (ValueError, TypeError, IndexError, AttributeError, OverflowError):
        raise Reject("bad_field") from None


def _time(s: str) -> int | None:
    if not s:
        return None
    m = _TIME.fullmatch(s)
    if not m:
        raise ValueError(s)
    h, mi, sec = int(m[1]), int(m[2]), int(m[3])
    if h > 23 or mi > 59 or sec > 59:
        raise ValueError(s)
    frac = round(float("0." + m[4]) * 1000) if m[4] else 0
    return ((h * 60 + mi) * 60 + sec) * 1000 + min(frac, 999)


def _angle(value: str, hemi: str, pos: str, neg: str, limit: int) -> float | None:
    if not value and not hemi:
        return None
    m = _ANGLE.fullmatch(value)
    if not m or hemi not in (pos, neg):
        raise ValueError(value)
    deg, minutes = int(m[1]), float(m[2])
    if minutes >= 60:
        raise ValueError(value)
    out = deg + minutes / 60
    if out > limit:
        raise ValueError(value)
    return round(-out if hemi == neg else out, 7)


def _num(s: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    if not s:
        return None
    if not _NUM.fullmatch(s):
        raise ValueError(s)
    v = float(s)
    if not lo <= v <= hi:
        raise ValueError(s)
    return v


def _int(s: str) -> int | None:
    if not s:
        return None
    if not _INT.fullmatch(s):
        raise ValueError(s)
    return int(s)


def _latlon(msg, s: Sentence) -> None:
    s.lat = _angle(_raw(msg, "lat"), _raw(msg, "lat_dir"), "N", "S", 90)
    s.lon = _angle(_raw(msg, "lon"), _raw(msg, "lon_dir"), "E", "W", 180)
    if (s.lat is None) != (s.lon is None):
        raise ValueError("half a position")


def _raw(msg, name: str) -> str:
    """The field's text as received (pynmea2 converts some fields to numbers itself)."""
    idx = msg.name_to_idx.get(name)
    return msg.data[idx] if idx is not None and idx < len(msg.data) else ""


def _mode_char(msg, name: str) -> str:
    return _raw(msg, name)[:1]


def _gga(msg, s: Sentence) -> Sentence:
    s.time_ms = _time(msg.data[0])
    _latlon(msg, s)
    s.quality = _int(_raw(msg, "gps_qual"))
    if s.quality is None or s.quality > 8:
        raise ValueError("quality")
    s.sats = _int(_raw(msg, "num_sats"))
    # a solution from zero satellites is a stale or dead-reckoned output, not a fix
    s.valid = 1 <= s.quality <= 6 and s.sats != 0
    s.hdop = _num(_raw(msg, "horizontal_dil"), 0, 100)
    s.alt_m = _num(_raw(msg, "altitude"), -1000, 100_000)
    return s


def _gns(msg, s: Sentence) -> Sentence:
    s.time_ms = _time(msg.data[0])
    _latlon(msg, s)
    modes = _raw(msg, "mode_indicator")
    known = [c for c in modes if c != "N"]
    s.quality = MODE_TO_QUALITY.get(known[0]) if known else None
    s.valid = s.quality is not None
    s.sats = _int(_raw(msg, "num_sats"))
    s.hdop = _num(_raw(msg, "hdop"), 0, 100)
    s.alt_m = _num(_raw(msg, "altitude"), -1000, 100_000)
    return s


def _rmc(msg, s: Sentence) -> Sentence:
    s.time_ms = _time(msg.data[0])
    _latlon(msg, s)
    mode = _mode_char(msg, "mode_indicator")
    if _raw(msg, "status") not in ("A", "V"):
        raise ValueError("status")
    s.valid = _raw(msg, "status") == "A" and mode != "N"
    s.quality = MODE_TO_QUALITY.get(mode) if mode else None
    date = msg.data[8]
    if date:
        if len(date) != 6 or not date.isdigit():
            raise ValueError(date)
        yy = int(date[4:])
        s.date = dt.date(yy + (1900 if yy >= GPS_EPOCH_YY else 2000), int(date[2:4]),
                         int(date[:2]))
    knots = _num(_raw(msg, "spd_over_grnd"), 0, 1000)
    s.speed_kmh = None if knots is None else round(knots * KNOTS_TO_KMH, 2)
    s.course_deg = _num(_raw(msg, "true_course"), 0, 360)
    return s


def _vtg(msg, s: Sentence) -> Sentence:
    if _mode_char(msg, "faa_mode") == "N":
        return s
    s.course_deg = _num(_raw(msg, "true_track"), 0, 360)
    kmh = _num(_raw(msg, "spd_over_grnd_kmph"), 0, 2000)
    if kmh is None:
        knots = _num(_raw(msg, "spd_over_grnd_kts"), 0, 1000)
        kmh = None if knots is None else knots * KNOTS_TO_KMH
    s.speed_kmh = None if kmh is None else round(kmh, 2)
    return s


def _gsa(msg, s: Sentence) -> Sentence:
    # GSA never vetoes a fix: per-constellation GSAs may say "no fix" for one system while
    # the combined solution is fine. It only contributes 2D/3D and HDOP.
    mode = _int(_raw(msg, "mode_fix_type"))
    if mode not in (1, 2, 3):
        raise ValueError("mode")
    s.mode = mode if mode > 1 else None
    s.hdop = _num(_raw(msg, "hdop"), 0, 100)
    return s


def _gll(msg, s: Sentence) -> Sentence:
    _latlon(msg, s)
    s.time_ms = _time(msg.data[4] if len(msg.data) > 4 else "")
    status = msg.data[5] if len(msg.data) > 5 else ""
    s.valid = status == "A" and _mode_char(msg, "faa_mode") != "N"
    return s


def _zda(msg, s: Sentence) -> Sentence:
    s.time_ms = _time(msg.data[0])
    fields = msg.data[1:4]
    if any(fields):
        day, month, year = (int(x) for x in fields)
        s.date = dt.date(year, month, day)
    return s


_EXTRACT = {"GGA": _gga, "GNS": _gns, "RMC": _rmc, "VTG": _vtg, "GSA": _gsa, "GLL": _gll,
            "ZDA": _zda}
