"""GPS simulator: plays a route as NMEA 0183 (GGA + RMC) onto a pty, like a USB receiver.

`python -m hil.gps_sim --link DEV` creates a pty, points the symlink DEV at its slave side (as
udev would name /dev/ttyACM0) and writes one fix epoch per 1/rate seconds. `--record FILE`
writes one JSON line per fix *as encoded in the NMEA* so tests can compare exactly what
reached the database with what was sent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import math
import os
import signal
import struct
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass

EARTH_R = 6_371_000.0

# Closed loops (lat, lon) around a port city's streets; vehicle k starts k/N along the loop.
ROUTES: dict[str, list[tuple[float, float]]] = {
    "harbour": [(53.5461, 9.9665), (53.5440, 9.9840), (53.5392, 9.9930), (53.5330, 9.9890),
                (53.5310, 9.9700), (53.5350, 9.9520), (53.5420, 9.9480)],
    "ring": [(53.5600, 9.9300), (53.5690, 9.9620), (53.5650, 10.0050), (53.5520, 10.0220),
             (53.5420, 10.0100), (53.5400, 9.9750), (53.5480, 9.9400)],
    "airport": [(53.5860, 9.9920), (53.6230, 9.9880), (53.6380, 10.0060), (53.6240, 10.0300),
                (53.5980, 10.0250), (53.5870, 10.0100)],
}


def _haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = (math.sin((la2 - la1) / 2) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2)
    return 2 * EARTH_R * math.asin(math.sqrt(h))


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    y = math.sin(lo2 - lo1) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return math.degrees(math.atan2(y, x)) % 360


@dataclass(frozen=True)
class Fix:
    time: dt.datetime
    lat: float
    lon: float
    alt_m: float
    speed_kmh: float
    course_deg: float
    sats: int = 9
    hdop: float = 0.9


@dataclass(frozen=True)
class Overspeed:
    """A stretch of `for_s` seconds at `kmh` at the end of every `every_s` (alert demos)."""

    kmh: float
    every_s: float
    for_s: float


class RoutePlayer:
    """Position along a closed route at a varying speed (sans-IO: time is an argument)."""

    def __init__(self, waypoints: list[tuple[float, float]], start_fraction: float = 0.0,
                 base_speed_kmh: float = 40.0, overspeed: Overspeed | None = None,
                 dwell: dict[int, float] | None = None):
        """`dwell`: waypoint index → seconds to stay there (at the base speed's pace: a stop
        is a leg of that many seconds' driving on which the vehicle does not move)."""
        self.overspeed = overspeed
        self.points = []
        self.legs = []
        self.parked: list[bool] = []
        ring = waypoints + [waypoints[0]]
        for i, (a, b) in enumerate(zip(ring, ring[1:], strict=False)):
            if dwell and i in dwell:
                self.points.append(a)
                self.legs.append(base_speed_kmh / 3.6 * dwell[i])
                self.parked.append(True)
            self.points.append(a)
            self.legs.append(_haversine(a, b))
            self.parked.append(False)
        self.points.append(ring[-1])
        self.length = sum(self.legs)
        self.distance = start_fraction * self.length
        self.base_speed = base_speed_kmh

    def speed_at(self, elapsed_s: float) -> float:
        o = self.overspeed
        if o is not None and elapsed_s % o.every_s >= o.every_s - o.for_s:
            return o.kmh
        # traffic: speeds between ~40 % and ~160 % of the base, changing over a few minutes
        return self.base_speed * (1 + 0.6 * math.sin(elapsed_s / 37.0))

    def advance(self, dt_s: float, elapsed_s: float) -> tuple[float, float, float, float]:
        """Move on by dt_s; returns (lat, lon, speed_kmh, course_deg)."""
        speed = self.speed_at(elapsed_s)
        self.distance = (self.distance + speed / 3.6 * dt_s) % self.length
        d = self.distance
        for (a, b), leg, parked in zip(zip(self.points, self.points[1:], strict=False),
                                       self.legs, self.parked, strict=True):
            if d <= leg and parked:
                return a[0], a[1], 0.0, 0.0
            if d <= leg:
                f = d / leg if leg else 0.0
                return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, speed, _bearing(a, b))
            d -= leg
        a, b = self.points[-2], self.points[-1]
        return b[0], b[1], speed, _bearing(a, b)


def _checksum(body: str) -> str:
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return f"{c:02X}"


def sentence(body: str) -> bytes:
    return f"${body}*{_checksum(body)}\r\n".encode("ascii")


def _dm(value: float, deg_digits: int) -> tuple[str, float]:
    """NMEA ddmm.mmmmm text and the exact value that text encodes."""
    deg = int(abs(value))
    minutes = round((abs(value) - deg) * 60, 5)
    if minutes >= 60:
        deg, minutes = deg + 1, 0.0
    text = f"{deg:0{deg_digits}d}{minutes:08.5f}"
    return text, deg + minutes / 60


def encode_fix(fix: Fix, talker: str = "GP") -> tuple[bytes, dict]:
    """GGA + RMC for one epoch, and the record of what they encode (what a parser must get)."""
    lat_t, lat_v = _dm(fix.lat, 2)
    lon_t, lon_v = _dm(fix.lon, 3)
    ns, ew = ("N" if fix.lat >= 0 else "S"), ("E" if fix.lon >= 0 else "W")
    hms = fix.time.strftime("%H%M%S") + f".{fix.time.microsecond // 10000:02d}"
    knots = round(fix.speed_kmh / 1.852, 2)
    course = round(fix.course_deg, 1)
    alt = round(fix.alt_m, 1)
    gga = (f"{talker}GGA,{hms},{lat_t},{ns},{lon_t},{ew},1,{fix.sats:02d},{fix.hdop:.1f},"
           f"{alt:.1f},M,46.9,M,,")
    rmc = (f"{talker}RMC,{hms},A,{lat_t},{ns},{lon_t},{ew},{knots:.2f},{course:.1f},"
           f"{fix.time.strftime('%d%m%y')},,,A")
    when = fix.time.replace(microsecond=(fix.time.microsecond // 10000) * 10000)
    record = {
        "ts_ms": round(when.timestamp() * 1000),
        "lat": round(lat_v if ns == "N" else -lat_v, 7),
        "lon": round(lon_v if ew == "E" else -lon_v, 7),
        "alt_m": alt,
        "speed_kmh": round(knots * 1.852, 2),
        "course_deg": course,
        "sats": fix.sats,
        "hdop": round(fix.hdop, 1),
    }
    return sentence(gga) + sentence(rmc), record


def fixes(route: str, start_fraction: float, rate_hz: float, start: dt.datetime,
          base_speed_kmh: float = 40.0, overspeed: Overspeed | None = None,
          route_file: str | None = None) -> Iterator[Fix]:
    """Endless fixes every 1/rate_hz seconds of GNSS time starting at `start`; with
    `route_file`, along its path instead of a named route (load_route_file)."""
    if route_file:
        points, dwell = load_route_file(route_file)
        player = RoutePlayer(points, start_fraction, base_speed_kmh, overspeed, dwell)
    else:
        player = RoutePlayer(ROUTES[route], start_fraction, base_speed_kmh, overspeed)
    step = 1.0 / rate_hz
    n = 0
    while True:
        elapsed = n * step
        lat, lon, speed, course = player.advance(step if n else 0.0, elapsed)
        yield Fix(start + dt.timedelta(seconds=elapsed), lat, lon, 12.0 + 3 * math.sin(n / 50),
                  speed, course)
        n += 1


# A route file is at most this big (a day's route on a city's roads is a few thousand
# waypoints, ~100 KB): a bigger one is a mistake, refused before it is read into memory.
MAX_ROUTE_FILE_BYTES = 16 * 1024**2
# A fast-forwarded drive (tests, a demo's history): at most this many GNSS seconds per wall
# second (at 10 epochs per GNSS second a pty takes 500 epochs/s), beginning at most a week ago.
MAX_TIME_SCALE = 50.0
MAX_START_AGO_S = 7 * 86_400


def load_route_file(path: str) -> tuple[list[tuple[float, float]], dict[int, float]]:
    """A JSON route: `{"points": [[lat, lon], …], "dwell": [[point index, seconds], …]}`
    (hil/demo_dispatch.py writes them). ValueError for anything else."""
    with open(path, "rb") as f:
        data = json.loads(f.read(MAX_ROUTE_FILE_BYTES + 1))
    points = [(float(lat), float(lon)) for lat, lon in data["points"]]
    if len(points) < 2 or not all(-90 <= a <= 90 and -180 <= o <= 180 for a, o in points):
        raise ValueError(f"{path}: at least two points of valid latitude and longitude")
    dwell = {int(i): float(sec) for i, sec in data.get("dwell", [])}
    if any(not 0 <= i < len(points) or not 0 <= sec <= 86_400 for i, sec in dwell.items()):
        raise ValueError(f"{path}: dwell indexes within the points, 0–86,400 seconds")
    return points, dwell


class PtyGps:
    """The master side of a pty whose slave looks like a GPS receiver's serial port."""

    def __init__(self, link: str | None = None):
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass as on a real UART
        self.slave_path = os.ttyname(slave)
        self._slave = slave  # keep it open so writes before the reader opens are buffered
        os.set_blocking(self.master, False)
        self.link = link
        if link:
            tmp = f"{link}.tmp{os.getpid()}"
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, link)
        self.dropped_bytes = 0

    def write(self, data: bytes) -> bool:
        """Write without blocking; a full buffer drops bytes, as a UART overrun would."""
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        self.dropped_bytes += len(data) - n
        return n == len(data)

    def _pending(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0" * 4))[0]

    def wait_reader(self, timeout: float = 30.0) -> bool:
        """Block until a reader has the port open and is reading (probing with empty lines).

        Opening a serial port flushes its input (pyserial does), so fixes written before the
        reader is there would be lost for reasons of the test, not of the agent.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending() == 0:
                self.write(b"\r\n")
            time.sleep(0.05)
            if self._pending() == 0:
                return True
        return False

    def drain(self, timeout: float = 3.0) -> bool:
        """Wait until the reader has taken every byte (closing the master discards the rest)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending() == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link and os.path.islink(self.link) and os.readlink(self.link) == self.slave_path:
            os.unlink(self.link)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.gps_sim", description=__doc__)
    p.add_argument("--link", required=True, help="symlink to create for the pty slave")
    p.add_argument("--route", choices=sorted(ROUTES), default="harbour")
    p.add_argument("--route-file", help="a JSON route with stops (load_route_file) instead "
                   "of --route")
    p.add_argument("--start-fraction", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=1.0, help="fix epochs per second (1–10)")
    p.add_argument("--speed", type=float, default=40.0, help="base speed km/h")
    p.add_argument("--overspeed", metavar="KMH:EVERY_S:FOR_S",
                   help="drive FOR_S seconds at KMH at the end of every EVERY_S (alert demo)")
    p.add_argument("--count", type=int, default=0, help="stop after N fixes (0: run forever)")
    p.add_argument("--record", help="append one JSON line per fix sent")
    p.add_argument("--pause-after", type=int, default=0, metavar="N",
                   help="after the N-th fix stop itself (SIGSTOP) until continued (SIGCONT): "
                   "a test holds the drive at a known fix; the drive goes on at its pace")
    p.add_argument("--wait-reader", action="store_true",
                   help="start the route only once a reader is taking the bytes")
    p.add_argument("--garbage-every", type=int, default=0,
                   help="every N epochs also write random bytes and a corrupt sentence")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="GNSS seconds per wall-clock second (fast-forward a drive; 1..MAX)")
    p.add_argument("--start-ago", type=float, default=0.0,
                   help="GNSS time begins this many seconds before now (a past drive)")
    args = p.parse_args(argv)
    if not 0.1 <= args.rate <= 10:
        p.error("--rate must be within 0.1..10")
    if not 1 <= args.time_scale <= MAX_TIME_SCALE or not 0 <= args.start_ago <= MAX_START_AGO_S:
        p.error(f"--time-scale must be within 1..{MAX_TIME_SCALE:g}, --start-ago within "
                f"0..{MAX_START_AGO_S:g}")
    overspeed = None
    if args.overspeed:
        try:
            kmh, every, for_s = (float(x) for x in args.overspeed.split(":"))
            if not 0 < for_s < every:
                raise ValueError
        except ValueError:
            p.error("--overspeed must be KMH:EVERY_S:FOR_S with 0 < FOR_S < EVERY_S")
        overspeed = Overspeed(kmh, every, for_s)
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gps = PtyGps(args.link)
    record = open(args.record, "a", buffering=1) if args.record else None
    print(f"gps_sim: {args.link} -> {gps.slave_path}", file=sys.stderr, flush=True)
    if args.wait_reader and not gps.wait_reader():
        print("gps_sim: no reader within 30 s", file=sys.stderr)
        gps.close()
        return 1
    step = 1.0 / args.rate / args.time_scale  # wall seconds between epochs
    t0 = time.monotonic()
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=args.start_ago)).replace(
        microsecond=0)
    try:
        for n, fix in enumerate(fixes(args.route, args.start_fraction, args.rate, start,
                                      args.speed, overspeed, args.route_file)):
            if stop or (args.count and n >= args.count):
                break
            data, rec = encode_fix(fix)
            if args.garbage_every and n % args.garbage_every == args.garbage_every - 1:
                data = os.urandom(40) + b"\r\n$GPGGA,123519,4807.038,N,01131.000,E*00\r\n" + data
            if gps.write(data) and record:
                record.write(json.dumps(rec) + "\n")
            if n + 1 == args.pause_after:
                held = time.monotonic()
                os.kill(os.getpid(), signal.SIGSTOP)  # returns once continued
                t0 += time.monotonic() - held  # on at the receiver's pace, no burst
            delay = t0 + (n + 1) * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        if record:
            record.close()
        gps.drain()
        gps.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
