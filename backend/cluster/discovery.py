"""The NATS edges of health-aware discovery (docs/scaling.md §9): routers publish their
health, `python -m backend dns` keeps a `HealthBook` from it and answers the routers' name.

NATS being away costs only freshness: the router keeps routing, and the DNS responder's
reports go stale, so after STALE_AFTER_S it answers with no address rather than a stale one.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import nats

from ..natsconn import NatsSettings, connect
from .dns import ROLE, Answerer, DnsEdge
from .health import HEALTH_INTERVAL_S, SUBJECT, HealthBook, Report

log = logging.getLogger(__name__)
# a first connection that fails (NATS not up yet) is tried again this often
FIRST_CONNECT_RETRY_S = 2.0


async def _connect(settings: NatsSettings, name: str):
    while True:
        try:
            return await connect(settings, name)
        except (OSError, nats.errors.Error) as exc:
            log.warning("cannot reach NATS at %s (retry in %.0fs): %s", settings.url,
                        FIRST_CONNECT_RETRY_S, exc)
            await asyncio.sleep(FIRST_CONNECT_RETRY_S)


async def publish_health(settings: NatsSettings, report) -> None:
    """Publish `report()` (a `Report`) every HEALTH_INTERVAL_S until cancelled."""
    nc = await _connect(settings, "fleet-router")
    try:
        while True:
            r = report()
            try:
                await nc.publish(r.subject(), r.encode())
            except nats.errors.Error as exc:  # reconnecting: the next report goes later
                log.debug("health not published: %s", exc)
            await asyncio.sleep(HEALTH_INTERVAL_S)
    finally:
        await nc.close()


async def run_dns(name: str, listen: tuple[str, int], settings: NatsSettings) -> None:
    """`python -m backend dns` until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    book = HealthBook()

    async def on_report(msg) -> None:
        try:
            book.report(Report.decode(msg.data), loop.time())
        except ValueError as exc:
            book.invalid += 1
            log.warning("ignored on %.80s: %s", msg.subject, exc)

    edge = await DnsEdge(Answerer(name, book)).start(*listen)
    nc = await _connect(settings, "fleet-dns")
    await nc.subscribe(f"{SUBJECT}{ROLE}.*", cb=on_report)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"dns ready: {name} on udp {listen[0]}:{edge.port()}", flush=True)
    try:
        await stopping.wait()
    finally:
        edge.close()
        await nc.close()
