"""What `fleet-agent status` shows: a JSON-able snapshot of the running agent, and its text.

`snapshot()` is pure: it takes the parts' own numbers (the uplink's, the journal's stats, each
source's `status()`) and `now`. The uplink is read through `uplink_status()` only, so the
uplink can change shape (a sans-IO machine with its own `status()`) without touching the rest.
"""

from __future__ import annotations

import time
from dataclasses import asdict, is_dataclass

from geostream.clock import wall_ms


def uplink_status(uplink, now_monotonic: float) -> dict:
    """The link as the operator sees it. Uses `uplink.status()` when the uplink has one."""
    own = getattr(uplink, "status", None)
    if callable(own):
        return dict(own())
    stats = uplink.stats
    server = uplink.config.server
    link = getattr(uplink, "link", None)
    rtt_ms = None
    rtt = link.rtt_s() if hasattr(link, "rtt_s") else None
    if rtt:
        rtt_ms = round(rtt * 1000, 1)
    last_ack = stats.last_ack_monotonic
    return {
        "state": stats.state,
        "server": f"{server.host}:{server.port}",
        "rtt_ms": rtt_ms,
        "last_ack_age_s": None if last_ack is None else round(now_monotonic - last_ack, 1),
        "connects": stats.connects,
        "batches_sent": stats.batches_sent,
        "readings_sent": stats.readings_sent,
        "readings_acked": stats.readings_acked,
        "last_error": stats.last_error,
        **{k: v for k, v in stats.extra.items() if isinstance(v, int | float | str | bool)},
    }


def journal_status(stats, now_ms: int) -> dict:
    """JournalStats -> the operator's view: size, backlog, age of the oldest unsent reading."""
    raw = asdict(stats) if is_dataclass(stats) else dict(stats)
    oldest = raw.get("oldest_pending_ms")
    return {
        "state": raw.get("state", "ok"),
        "epoch": raw.get("epoch"),
        "file_bytes": raw.get("file_bytes", 0),
        "backlog": raw.get("pending", 0),
        "oldest_unsent_age_s": None if oldest is None else round((now_ms - oldest) / 1000, 1),
        "held_in_memory": raw.get("held", 0),
        "dropped": raw.get("dropped", {}),
    }


def snapshot(*, vehicle: str, version: str, started_monotonic: float, now_monotonic: float,
             now_ms: int, uplink: dict, journal: dict, sources: dict[str, dict],
             accepted: int, cab: dict | None = None) -> dict:
    return {
        "vehicle": vehicle,
        "version": version,
        "uptime_s": round(now_monotonic - started_monotonic, 1),
        "time_ms": now_ms,
        "accepted": accepted,
        "link": uplink,
        "journal": journal,
        "sources": sources,
        **({"cab": cab} if cab is not None else {}),
    }


def _age(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def render(s: dict) -> str:
    """The text of `fleet-agent status` (without --json)."""
    link, journal = s["link"], s["journal"]
    rtt = "-" if link.get("rtt_ms") is None else f"{link['rtt_ms']:.1f} ms"
    lines = [
        f"fleet-agent {s['version']}  vehicle {s['vehicle']}  up {s['uptime_s']:.0f} s",
        f"link     {link.get('state')}  server {link.get('server')}  rtt {rtt}  "
        f"last ack {_age(link.get('last_ack_age_s'))} ago  "
        f"sent {link.get('readings_sent', 0)}  acked {link.get('readings_acked', 0)}",
    ]
    if link.get("last_error"):
        lines.append(f"         last error: {link['last_error']}")
    lines.append(
        f"journal  {journal['state']}  {journal['file_bytes'] / 1e6:.1f} MB  "
        f"backlog {journal['backlog']}  oldest unsent {_age(journal['oldest_unsent_age_s'])}"
        + (f"  dropped {journal['dropped']}" if journal.get("dropped") else ""))
    for name, src in s["sources"].items():
        counters = "  ".join(f"{k} {v}" for k, v in sorted(src.items())
                             if k != "state" and isinstance(v, int | float)
                             and not isinstance(v, bool))
        lines.append(f"source   {name}: {src.get('state', '?')}  {counters}".rstrip())
    if s.get("cab"):
        cab = s["cab"]
        lines.append(f"cab      {'serving ' + cab['origin'] if cab['running'] else 'off'}  "
                     f"live apps {cab['live']}  connections {cab.get('connections', 0)}  "
                     f"refused {cab.get('refused', 0)}")
    lines.append(f"accepted {s['accepted']} readings this run")
    return "\n".join(lines)


def now_pair() -> tuple[float, int]:
    return time.monotonic(), wall_ms()
