"""SIGHUP: what of a changed agent.toml the running agent can take over, and what needs a restart.

Safe at run time (nothing in flight depends on it): the log level, GPS decimation, and each CAN
bus's signal selection and rate rules (decoder + selector; the counters carry over). Everything
else (vehicle, token, server, journal, devices, interfaces, DBC files) is named in the plan as
"needs a restart" and left as it is. `plan()` is pure; `apply()` swaps the parts in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .gps.config import _DECIMATION

# [gps] keys that only shape decimation
GPS_RELOADABLE = frozenset({"decimate", *_DECIMATION})
# [[can.bus]] keys that only shape decoding selection and the rate rules
CAN_RELOADABLE = frozenset({"signals", "min_interval_ms", "deadband", "max_interval_ms",
                            "snapshot_hz", "snapshot_max_age_ms", "j1939"})


@dataclass
class Plan:
    reload: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)


def _diff(old: dict, new: dict) -> set[str]:
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


def plan(old, new) -> Plan:
    """What differs between two AgentConfigs, split into reloadable and restart-only."""
    p = Plan()
    for name in ("vehicle_id", "token", "server", "journal"):
        if getattr(old, name) != getattr(new, name):
            p.restart.append("token" if name == "token" else name)
    for key in sorted(_diff(old.log, new.log)):
        (p.reload if key == "level" else p.restart).append(f"log.{key}")
    for key in sorted(_diff(old.status, new.status)):
        p.restart.append(f"status.{key}")
    if old.cab != new.cab:  # a listening socket and its certificate: a restart
        p.restart.append("cab")
    for key in sorted(_diff(old.gps, new.gps)):
        if not old.gps or not new.gps:
            p.restart.append("gps")
            break
        (p.reload if key in GPS_RELOADABLE else p.restart).append(f"gps.{key}")
    old_buses = {b.get("name"): b for b in old.can.get("bus", [])}
    new_buses = {b.get("name"): b for b in new.can.get("bus", [])}
    if set(old_buses) != set(new_buses) or _diff(
            {k: v for k, v in old.can.items() if k != "bus"},
            {k: v for k, v in new.can.items() if k != "bus"}) - {"snapshot_hz"}:
        p.restart.append("can (buses added, removed or renamed)")
    else:
        if old.can.get("snapshot_hz") != new.can.get("snapshot_hz"):
            p.reload.append("can.snapshot_hz")
        for name in sorted(old_buses, key=str):
            for key in sorted(_diff(old_buses[name], new_buses[name])):
                (p.reload if key in CAN_RELOADABLE else p.restart).append(f"can.{name}.{key}")
    return p


def apply(sources: list, fresh: list) -> list[str]:
    """Move the reloadable parts of freshly built sources into the running ones (same names).
    Returns what was swapped."""
    by_name = {s.name: s for s in fresh}
    done = []
    for src in sources:
        new = by_name.get(src.name)
        if new is None or type(new) is not type(src):
            continue
        if hasattr(src, "pipeline"):  # CAN: decoder + selector into the running pipeline
            old_p, new_p = src.pipeline, new.pipeline
            for k, v in old_p.decoder.counts.items():  # the counters carry over
                new_p.decoder.counts[k] = v
            old_p.decoder, old_p.selector = new_p.decoder, new_p.selector
            old_p.snapshots = new_p.snapshots
            # socketcan's kernel filter was set when the bus opened: newly selected messages
            # pass it from the next reopen on (the decoder already ignores deselected ones)
            done.append(f"{src.name}: selection")
        elif hasattr(src, "_stream"):  # NMEA over serial/TCP
            src._stream.decimator = new._stream.decimator
            done.append(f"{src.name}: decimation")
        elif hasattr(src, "decimator"):  # gpsd
            src.decimator = new.decimator
            done.append(f"{src.name}: decimation")
    return done
