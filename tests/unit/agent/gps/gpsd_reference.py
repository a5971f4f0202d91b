"""Compare our fixes with gpsd's TPV reports for the captures in tests/data/gpsd.

A reference fix is a TPV with mode >= 2 and a position. gpsd reports several TPVs per epoch
(one per sentence) and, before it knows the date, TPVs without `time`: those are keyed by the
time of day of the sentence that produced them and merge with a dated TPV of the same time of
day. One of our fixes matches a reference fix with the same time (or time of day, for
undated ones) within MATCH_DEG in latitude and longitude.

`python -m tests.unit.agent.gps.gpsd_reference` prints the markdown table for docs/gps.md.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from agent.gps import NmeaDecoder
from agent.gps.cli import fix_json
from agent.gps.rollover import GPS_ROLLOVER

DATA = Path(__file__).parents[3] / "data" / "gpsd"
# gpsd 3.22 moves NMEA dates before 2017-01-01 (leap second 18) forward by 1024 weeks; we move
# a date that lies more than half a period before the pivot, so this pivot draws our line on
# the same day (dates up to 2016-12-31 move).
GPSD_PIVOT = dt.date(2016, 12, 31) + GPS_ROLLOVER / 2
# Same epoch, same position: some receivers print a slightly different position in RMC
# and GGA of one epoch (B&G Zeus: 1.5 m), and gpsd reports the one it saw last.
MATCH_DEG = 1e-4
_TOD_FIELD = {"GGA": 1, "RMC": 1, "GNS": 1, "ZDA": 1, "GLL": 5}

CAPTURES = sorted(p.stem for p in DATA.glob("*.log"))


@dataclass
class Result:
    name: str
    expected: int
    reported: int
    matched: int
    extra: list = field(default_factory=list)
    missed: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)


def reference(chk_text: str) -> tuple[dict[str, list], dict[str, list]]:
    """(dated TPV positions by ISO time, undated ones by HHMMSS of their sentence)."""
    timed: dict[str, list] = {}
    untimed: dict[str, list] = {}
    tod = None
    for line in chk_text.splitlines():
        if line.startswith("$"):
            fields = line.split(",")
            idx = _TOD_FIELD.get(fields[0][3:])
            if idx is not None and idx < len(fields) and fields[idx]:
                tod = fields[idx].split(".")[0]
        elif line.startswith("{"):
            rep = json.loads(line)
            if rep.get("class") != "TPV" or rep.get("mode", 0) < 2 or "lat" not in rep:
                continue
            if "time" in rep:
                timed.setdefault(rep["time"], []).append((rep["lat"], rep["lon"]))
            elif tod is not None:
                untimed.setdefault(tod, []).append((rep["lat"], rep["lon"]))
    for when in timed:
        untimed.pop(when[11:19].replace(":", ""), None)
    return timed, untimed


def compare(name: str, decoder: NmeaDecoder | None = None) -> Result:
    dec = decoder or NmeaDecoder(pivot=GPSD_PIVOT)
    data = (DATA / f"{name}.log").read_bytes()
    fixes = dec.feed(data) + dec.flush()
    timed, untimed = reference((DATA / f"{name}.log.chk").read_text(errors="replace"))

    def near(lat: float, lon: float, where: list) -> bool:
        return any(abs(a - lat) < MATCH_DEG and abs(b - lon) < MATCH_DEG for a, b in where)

    res = Result(name, len(timed) + len(untimed), len(fixes), 0, counts=dict(dec.counts))
    seen, seen_tod = set(), set()
    for pos in fixes:
        when = fix_json(pos)["time"]
        tod = when[11:19].replace(":", "")
        if when in timed and near(pos.lat, pos.lon, timed[when]):
            seen.add(when)
        elif tod in untimed and tod not in seen_tod and near(pos.lat, pos.lon, untimed[tod]):
            seen_tod.add(tod)
        else:
            res.extra.append(when)
            continue
        res.matched += 1
    res.missed = [t for t in timed if t not in seen] + [t for t in untimed if t not in seen_tod]
    return res


def receiver(name: str) -> str:
    """The capture's receiver from its header comment."""
    keys = {}
    for line in (DATA / f"{name}.log").read_bytes().decode("utf-8", "replace").splitlines()[:12]:
        if line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            keys.setdefault(key.strip().lower(), value.strip())
    parts = [keys.get("name") or keys.get("gps") or "", keys.get("chipset", "")]
    return ", ".join(p for p in parts if p and p != "?") or "?"


def main() -> None:
    results = [compare(n) for n in CAPTURES]
    print("| capture | receiver | expected | reported | matched | differences |")
    print("|---|---|---|---|---|---|")
    for r in results:
        diff = ", ".join([f"+{t}" for t in r.extra] + [f"-{t}" for t in r.missed]) or "none"
        print(f"| {r.name} | {receiver(r.name)} | {r.expected} | {r.reported} | {r.matched} "
              f"| {diff} |")
    exp = sum(r.expected for r in results)
    rep = sum(r.reported for r in results)
    hit = sum(r.matched for r in results)
    print(f"\nrecall {hit}/{exp} = {hit / exp:.2%}, precision {hit}/{rep} = {hit / rep:.2%}")


if __name__ == "__main__":
    main()
