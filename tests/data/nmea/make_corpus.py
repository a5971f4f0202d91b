"""Regenerate the NMEA corpus: `python tests/data/nmea/make_corpus.py`.

Each style imitates one receiver family's output (sentence order, talkers, precision) for a
simulated drive whose truth is known here, and writes `<style>.nmea` plus
`<style>.expected.jsonl` (the fixes a correct decoder must print, computed from the encoded
fields by this script, not by the decoder). Deterministic: fixed seed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import struct
from functools import reduce
from pathlib import Path

HERE = Path(__file__).parent
KN = 1.852


def cs(body: str) -> str:
    check = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{check:02X}"


def ubx(cls: int, mid: int, payload: bytes) -> bytes:
    body = bytes((cls, mid)) + struct.pack("<H", len(payload)) + payload
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return b"\xb5\x62" + body + bytes((a, b))


def rtcm(payload: bytes) -> bytes:
    frame = bytes((0xD3, len(payload) >> 8, len(payload) & 0xFF)) + payload
    crc = 0
    for byte in frame:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return frame + (crc & 0xFFFFFF).to_bytes(3, "big")


def angle(value: float, width: int, decimals: int, pos: str, neg: str) -> tuple[str, str, float]:
    """Encode degrees as NMEA (d)ddmm.mmmm; return fields and the value they really say."""
    a = abs(value)
    deg = int(a)
    minutes = round((a - deg) * 60, decimals)
    if minutes >= 60:
        deg, minutes = deg + 1, 0.0
    text = f"{deg:0{width}d}{minutes:0{3 + decimals}.{decimals}f}"
    said = round(deg + float(f"{minutes:.{decimals}f}") / 60, 7)
    return text, pos if value >= 0 else neg, said if value >= 0 else -said


class Epoch:
    def __init__(self, when: dt.datetime, lat: float, lon: float, kmh: float, course: float,
                 alt: float, sats: int, hdop: float, decimals: int):
        self.when, self.kmh, self.course, self.alt, self.sats, self.hdop = (
            when, kmh, course, alt, sats, hdop)
        self.lat_s, self.ns, self.lat = angle(lat, 2, decimals, "N", "S")
        self.lon_s, self.ew, self.lon = angle(lon, 3, decimals, "E", "W")
        self.knots = f"{kmh / KN:.3f}"

    def hms(self, frac: int = 2) -> str:
        s = self.when.strftime("%H%M%S")
        sub = f"{self.when.microsecond:06d}"[:frac]
        return s + ("." + sub if frac else "")

    def ddmmyy(self) -> str:
        return self.when.strftime("%d%m%y")

    def expected(self, *, alt=True, sats=True, hdop=True, speed_from_knots=True, fix=1):
        spd = round(float(self.knots) * KN, 2) if speed_from_knots else round(self.kmh, 2)
        return {
            "time": self.when.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{self.when.microsecond // 1000:03d}Z",
            "lat": self.lat, "lon": self.lon,
            "alt_m": self.alt if alt else None, "speed_kmh": spd,
            "course_deg": self.course, "fix": fix,
            "sats": self.sats if sats else None, "hdop": self.hdop if hdop else None,
        }


def drive(start: dt.datetime, n: int, rng: random.Random, decimals: int,
          lat=48.1173, lon=11.5167, hz: float = 1.0) -> list[Epoch]:
    """Parked for a few epochs, then accelerating and turning."""
    out = []
    speed, course = 0.0, 84.0
    for i in range(n):
        if i > 4:
            speed = min(90.0, speed + 6.0)
            course = (course + rng.uniform(-8, 8)) % 360
        step = speed / 3.6 / hz
        lat += step * math.cos(math.radians(course)) / 111_320
        lon += step * math.sin(math.radians(course)) / (111_320 * math.cos(math.radians(lat)))
        when = start + dt.timedelta(seconds=i / hz)
        out.append(Epoch(when, lat, lon, speed, round(course, 1), round(500 + i * 0.3, 1),
                         rng.randint(6, 18), round(rng.uniform(0.6, 2.5), 1), decimals))
    return out


def gsv(talker: str, rng: random.Random, n: int) -> list[str]:
    out, msgs = [], (n + 3) // 4
    for m in range(msgs):
        sats = ",".join(f"{rng.randint(1, 32):02d},{rng.randint(5, 85):02d},"
                        f"{rng.randint(0, 359):03d},{rng.randint(20, 48)}"
                        for _ in range(min(4, n - 4 * m)))
        out.append(cs(f"{talker}GSV,{msgs},{m + 1},{n:02d},{sats}"))
    return out


def ublox(e: Epoch, rng: random.Random) -> list[str]:
    t = e.hms()
    return [
        cs(f"GNRMC,{t},A,{e.lat_s},{e.ns},{e.lon_s},{e.ew},{e.knots},{e.course:.2f},"
           f"{e.ddmmyy()},,,A"),
        cs(f"GNVTG,{e.course:.2f},T,,M,{e.knots},N,{e.kmh:.3f},K,A"),
        cs(f"GNGGA,{t},{e.lat_s},{e.ns},{e.lon_s},{e.ew},1,{e.sats:02d},{e.hdop:.2f},"
           f"{e.alt:.1f},M,47.6,M,,"),
        cs(f"GNGSA,A,3,05,07,13,15,18,,,,,,,,{e.hdop + 0.4:.2f},{e.hdop:.2f},1.50"),
        cs(f"GNGSA,A,3,71,72,81,,,,,,,,,,{e.hdop + 0.4:.2f},{e.hdop:.2f},1.50"),
        *gsv("GP", rng, 7), *gsv("GL", rng, 3),
        cs(f"GNGLL,{e.lat_s},{e.ns},{e.lon_s},{e.ew},{t},A,A"),
    ]


def quectel(e: Epoch, rng: random.Random) -> list[str]:
    t = e.hms(3)
    return [
        cs(f"GNRMC,{t},A,{e.lat_s},{e.ns},{e.lon_s},{e.ew},{e.knots},{e.course:.2f},"
           f"{e.ddmmyy()},,,A,V"),
        cs(f"GNGGA,{t},{e.lat_s},{e.ns},{e.lon_s},{e.ew},1,{e.sats:02d},{e.hdop:.2f},"
           f"{e.alt:.1f},M,47.6,M,,"),
        cs(f"GPGSA,A,3,05,07,13,,,,,,,,,,1.9,{e.hdop:.2f},1.5,1"),
        cs(f"GLGSA,A,3,71,72,,,,,,,,,,,1.9,{e.hdop:.2f},1.5,2"),
        cs(f"GAGSA,A,3,04,11,,,,,,,,,,,1.9,{e.hdop:.2f},1.5,3"),
        cs(f"BDGSA,A,3,21,22,,,,,,,,,,,1.9,{e.hdop:.2f},1.5,4"),
        *gsv("GP", rng, 4), *gsv("GB", rng, 2), *gsv("GA", rng, 2),
        cs(f"GNVTG,{e.course:.2f},T,,M,{e.knots},N,{e.kmh:.2f},K,A"),
        cs("PQTMEPE,2,1.230,1.110,2.500,1.660,3.000"),
    ]


def quectel_nofix(e: Epoch) -> list[str]:
    t = e.hms(3)
    return [cs(f"GNRMC,{t},V,,,,,,,{e.ddmmyy()},,,N,V"), cs(f"GNGGA,{t},,,,,0,00,99.99,,,,,,"),
            cs("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1"), cs("GNVTG,,T,,M,,N,,K,N")]


def simcom(e: Epoch, rng: random.Random) -> list[str]:
    t = e.hms(1)
    return [
        *gsv("GP", rng, 8), *gsv("GL", rng, 2),
        cs(f"GPGGA,{t},{e.lat_s},{e.ns},{e.lon_s},{e.ew},1,{e.sats:02d},{e.hdop:.1f},"
           f"{e.alt:.1f},M,47.0,M,,"),
        cs(f"GPRMC,{t},A,{e.lat_s},{e.ns},{e.lon_s},{e.ew},{e.knots},{e.course:.1f},"
           f"{e.ddmmyy()},1.9,E,A"),
        cs(f"GPGSA,A,3,10,12,14,15,18,24,25,32,,,,,1.5,{e.hdop:.1f},1.1"),
        cs(f"GPVTG,{e.course:.1f},T,{e.course:.1f},M,{e.knots},N,{e.kmh:.1f},K,A"),
    ]


def sirf(e: Epoch, rng: random.Random) -> list[str]:
    t = e.hms(3)
    return [
        cs(f"GPGGA,{t},{e.lat_s},{e.ns},{e.lon_s},{e.ew},1,{e.sats:02d},{e.hdop:.1f},"
           f"{e.alt:.1f},M,47.6,M,,0000"),
        cs(f"GPGSA,A,3,05,07,13,15,,,,,,,,,2.1,{e.hdop:.1f},1.8"),
        *gsv("GP", rng, 9),
        cs(f"GPRMC,{t},A,{e.lat_s},{e.ns},{e.lon_s},{e.ew},{e.knots},{e.course:.2f},"
           f"{e.ddmmyy()},,"),
    ]


def sirf_nofix(e: Epoch) -> list[str]:
    t = e.hms(3)  # stale position with quality 0 / status V: must never become a fix
    return [cs(f"GPGGA,{t},4807.0380,N,01131.0000,E,0,00,50.0,0.0,M,0.0,M,,0000"),
            cs("GPGSA,A,1,,,,,,,,,,,,,50.0,50.0,50.0"),
            cs(f"GPRMC,{t},V,4807.0380,N,01131.0000,E,0.00,0.00,{e.ddmmyy()},,")]


def trimble(e: Epoch, rng: random.Random) -> list[str]:
    t = e.hms(2)
    d = e.when
    return [
        cs(f"GPGGA,{t},{e.lat_s},{e.ns},{e.lon_s},{e.ew},2,{e.sats:02d},{e.hdop:.1f},"
           f"{e.alt:.2f},M,47.60,M,3.0,0136"),
        cs(f"GPVTG,{e.course:.2f},T,{e.course:.2f},M,{e.knots},N,{e.kmh:.3f},K,D"),
        cs(f"GPZDA,{t},{d.day:02d},{d.month:02d},{d.year},00,00"),
    ]


def septentrio(e: Epoch, rng: random.Random) -> list[str]:
    t = e.hms(2)
    d = e.when
    return [
        cs(f"GNGNS,{t},{e.lat_s},{e.ns},{e.lon_s},{e.ew},AARN,{e.sats:02d},{e.hdop:.1f},"
           f"{e.alt:.1f},47.6,,"),
        cs(f"GNGSA,A,3,05,07,13,,,,,,,,,,1.8,{e.hdop:.1f},1.3"),
        cs(f"GNVTG,{e.course:.2f},T,,M,{e.knots},N,{e.kmh:.2f},K,A"),
        cs(f"GNZDA,{t},{d.day:02d},{d.month:02d},{d.year},,"),
    ]


def write(name: str, chunks: list[bytes], expected: list[dict]) -> None:
    (HERE / f"{name}.nmea").write_bytes(b"".join(chunks))
    with open(HERE / f"{name}.expected.jsonl", "w") as f:
        for row in expected:
            f.write(json.dumps(row) + "\n")


def lines(sentences: list[str]) -> list[bytes]:
    return [(s + "\r\n").encode() for s in sentences]


def main() -> None:
    rng = random.Random(4)
    start = dt.datetime(2026, 11, 23, 12, 0, 0)

    # u-blox M8 GN multi-talker, UBX NAV-PVT and RTCM 1005 interleaved
    chunks, exp = [], []
    for i, e in enumerate(drive(start, 25, rng, 5)):
        chunks += lines(ublox(e, rng))
        if i % 3 == 0:
            chunks.append(ubx(0x01, 0x07, bytes(rng.randrange(256) for _ in range(92))))
        if i % 4 == 1:
            chunks.append(rtcm(bytes((0x3E, 0xD0)) + bytes(rng.randrange(256) for _ in range(17))))
        exp.append(e.expected())
    write("ublox_m8_gn", chunks, exp)

    # Quectel multi-constellation with 4.11 fields, cold start without fix first
    chunks, exp = [], []
    for i, e in enumerate(drive(start, 20, rng, 4, lat=-33.8688, lon=151.2093)):
        if i < 4:
            chunks += lines(quectel_nofix(e))
        else:
            chunks += lines(quectel(e, rng))
            exp.append(e.expected())
    write("quectel_lc", chunks, exp)

    # SIMCom modem, GP only with GL GSV, 6-decimal minutes, across New Year midnight, west
    chunks, exp = [], []
    ny = dt.datetime(2026, 12, 31, 23, 59, 50)
    for e in drive(ny, 20, rng, 6, lat=40.7128, lon=-74.0060):
        chunks += lines(simcom(e, rng))
        exp.append(e.expected())
    write("simcom_7600", chunks, exp)

    # old SiRF GP-only at 4800 baud: stale void positions before the first fix
    chunks, exp = [], []
    for i, e in enumerate(drive(start, 15, rng, 4)):
        if i < 3:
            chunks += lines(sirf_nofix(e))
        else:
            chunks += lines(sirf(e, rng))
            exp.append(e.expected())
    write("sirf_gp", chunks, exp)

    # Trimble-style DGPS: GGA + VTG + ZDA, the date only from ZDA, 5 Hz
    chunks, exp = [], []
    for e in drive(start, 30, rng, 5, hz=5.0):
        chunks += lines(trimble(e, rng))
        exp.append(e.expected(speed_from_knots=False, fix=2))
    write("trimble_zda", chunks, exp)

    # Septentrio-style GNS + ZDA (no GGA/RMC), mode string AARN = autonomous fix
    chunks, exp = [], []
    for e in drive(start, 12, rng, 5, lat=-22.9068, lon=-43.1729):
        chunks += lines(septentrio(e, rng))
        exp.append(e.expected(speed_from_knots=False))
    write("septentrio_gns", chunks, exp)

    # u-blox stream damaged every way the issue lists; damaged epochs yield no fix
    chunks, exp = [], []
    epochs = drive(start, 40, rng, 5)
    for i, e in enumerate(epochs):
        good = lines(ublox(e, rng))
        if i == 6:  # bad checksum RMC, truncated GGA, missing checksum GLL
            rmc = good[0].replace(b"*", b"1*", 1)
            gga = good[2][:30]
            gll = ublox(e, rng)[-1].split("*")[0].encode() + b"\r\n"
            good = [rmc, good[1], gga, *good[3:-1], gll]
        elif i == 9:  # over-long RMC, invalid minutes in GGA, binary noise inside GLL
            rmc = cs(ublox(e, rng)[0][1:-3] + "," + "9" * 100).encode() + b"\r\n"
            gga = cs(ublox(e, rng)[2][1:-3].replace(e.lat_s, "4875.00000")).encode() + b"\r\n"
            gll = good[-1][:20] + b"\x00\xff\x13" + good[-1][20:]
            good = [rmc, good[1], gga, *good[3:-1], gll]
        elif i == 12:  # void: receiver lost the fix but repeats the old position
            good = lines([s.replace(",A,", ",V,", 1).replace(",1,", ",0,", 1)
                          for s in [x[1:-3] for x in ublox(e, rng)]])
            good = lines([cs(x.decode().strip()) for x in good])
        elif i in (15, 16):  # time going backwards: a whole epoch from 10 s earlier
            chunks += good
            exp.append(e.expected())
            back = drive(start + dt.timedelta(seconds=i - 10), 1, rng, 5)[0]
            chunks += lines(ublox(back, rng))
            continue
        elif i == 20:  # impossible jump: 1 degree north for one epoch
            far = Epoch(e.when, e.lat + 1, e.lon, e.kmh, e.course, e.alt, e.sats, e.hdop, 5)
            good = lines(ublox(far, rng))
        elif i in (7, 10):
            # after a damaged epoch none of whose timed sentences survived: the next epoch
            # would hold the damaged one's timeless sentences (VTG, GSA), so it yields no fix
            pass
        else:
            exp.append(e.expected())
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        chunks += good
        chunks.append(noise.replace(b"$", b"#"))
    write("noisy_mix", chunks, exp)


if __name__ == "__main__":
    main()
