"""Runs gateway + writer + hub + web in one process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web

from geostream.clock import wall_ms

from . import gc_policy, loop_stalls
from .alerts import AlertEngine
from .config import BackendConfig
from .dbwatch import CHECK_EVERY_S, ReplicationWatch
from .dispatch.service import Dispatcher
from .driver.applier import ActionApplier
from .gateway import Gateway
from .hub import Hub, position_feature
from .route_courier import RouteCourier
from .store import open_store
from .vehicle_actions import SWEEP_EVERY_S, VehicleActions
from .writer import BatchWriter

log = logging.getLogger(__name__)



class Backend:
    def __init__(self, config: BackendConfig, cluster=None):
        """`cluster`: a worker's ReuseportNode (backend/cluster/workers.py), else the
        configured router node, if any."""
        self.config = config
        self.store = open_store(config.db)
        self.writer = BatchWriter(self.store, config.writer_max_rows,
                                  config.writer_linger_ms / 1000,
                                  interval_s=config.writer_interval_ms / 1000)
        self.hub = Hub()
        # with NATS, committed positions and alerts go out on it and this hub is fed from it
        self.fanout = None
        if config.nats_url:
            from .fanout import NatsFanout

            self.fanout = NatsFanout(config.nats_settings(), self.hub)
        live = self.fanout or self.hub
        self.replanner = None  # re-planning on events (set below when there is a planner)

        def publish_alert(alert: dict) -> None:
            live.publish_alert(alert)
            if self.replanner is not None:  # an offline or late vehicle asks for a re-plan
                self.replanner.on_alert(alert)

        self.alerts = AlertEngine(self.store, config.alert_rules(), publish_alert)
        # dispatched routes also go to their vehicles' agents (backend/route_courier.py)
        self.courier = RouteCourier(self.store, lambda: self.gateway.downlink)

        def publish_dispatch(field: str, payload: dict, vehicle: str | None,
                             route_id: str | None = None) -> None:
            live.publish_dispatch(field, payload, vehicle, route_id)
            self.courier.published(field, payload, vehicle, route_id)

        # dispatch changes go to every node's hub (through NATS when configured)
        self.dispatch = Dispatcher(self.store, publish_dispatch,
                                   dwell_s=config.arrival_dwell_s,
                                   etas=eta_service(config, self.store, live,
                                                    publish_alert))
        if self.dispatch.dwell_s is not None:  # the vehicles' detectors dwell as this one
            self.courier.dwell_s = self.dispatch.dwell_s
        self.gateway = Gateway(self.store, self.writer, live,
                               ticket_file=config.ticket_path(), alerts=self.alerts,
                               ts_window=config.time_window(),
                               cluster=cluster or config.cluster_node(), dispatch=self.dispatch,
                               quic_library=config.gateway_quic_library())
        # several gateway processes (router nodes, --reuseport workers, nodes sharing NATS):
        # one owner per vehicle for its clock-driven alert rules (backend/cluster/owners.py)
        self.owners = None
        if self.gateway.cluster is not None or config.nats_url:
            from .cluster.owners import VehicleOwners

            self.owners = VehicleOwners(self.store)
            self.gateway.owners = self.alerts.owners = self.owners
        # driver actions through the vehicles' journals: the one applier (backend/driver/)
        self.vehicle_actions = VehicleActions(ActionApplier(self.store, self.dispatch, self.hub))
        self.gateway.driver_actions = self.vehicle_actions
        if self.fanout is not None:
            self.gateway.fanout = self.fanout  # its refusals in /metrics
            self.gateway.downlink.notify_other_nodes = self.fanout.wake
            self.fanout.on_wake = self.gateway.downlink.woken
        self.planning = planning_service(config, self.store, self.dispatch)
        self.notifier = notifier(config, self.store)
        self.dispatch.etas.on_eta = self.notifier.on_eta  # ETA changes to the outbox
        if self.planning is not None:
            from .dispatch.replanner import Replanner

            self.replanner = Replanner(self.planning, live.publish_dispatch, wall_ms,
                                       self.dispatch.live_vehicles)
            self.dispatch.on_event = self.replanner.on_event
        self._runner: web.AppRunner | None = None
        self._alert_timer: asyncio.Task | None = None
        self._maintenance_timer: asyncio.Task | None = None
        self._sweep_timer: asyncio.Task | None = None  # image parts that never completed
        # PostgreSQL: is every commit on a standby too? (status, metrics, a logged alarm)
        self.db_watch = ReplicationWatch() if hasattr(self.store, "replication") else None
        self.gateway.db_replication = self.db_watch
        self._replication_timer: asyncio.Task | None = None

    def status(self) -> dict:
        return {"gateway": self.gateway.stats.as_dict(),
                "vehicles_connected": sorted(self.gateway.connections),
                "writer": self.writer.status(),
                "alerts": {k: dict(v) if isinstance(v, dict) else v
                           for k, v in self.alerts.stats.items()},
                "owners": dict(self.owners.stats) if self.owners else None,
                "dispatch": dict(self.dispatch.stats),
                "notifications": dict(self.notifier.stats),
                "replan": dict(self.replanner.stats) if self.replanner else None,
                "database": self.db_watch.status() if self.db_watch else None,
                "hub": self.hub.stats()}

    async def start(self) -> None:
        from .web import make_app

        c = self.config
        await self.store.open()
        if self.owners is not None:
            await self.owners.start()
        self._seed_hub(await self.store.last_positions(), wall_ms())
        if self.fanout is not None:
            await self.fanout.start()
        await self.alerts.start(wall_ms())
        await self.dispatch.etas.start()
        await self.dispatch.start()
        self.writer.start()
        await self.gateway.start(c.quic_host, c.quic_port, c.cert, c.key)
        self._alert_timer = asyncio.get_running_loop().create_task(self._alert_clock(),
                                                                   name="alert-timer")
        self._sweep_timer = asyncio.get_running_loop().create_task(self._sweep_clock(),
                                                                   name="image-parts-sweep")
        if self.db_watch is not None:
            self._replication_timer = asyncio.get_running_loop().create_task(
                self._replication_clock(), name="replication-watch")
        self.app = make_app(self.hub, self.store, self.status, auth_state(c, self.store),
                            gateway=self.gateway, alert_rules=self.alerts.rules,
                            map_files=(c.map_style, c.map_pmtiles,
                                       c.map_overlay or street_overlay(c)),
                            metrics_token=c.metrics_token, planning=self.planning)
        self._add_mcp_and_maintenance()
        from .api.notifications import NOTIFIER

        self.app[NOTIFIER] = self.notifier  # the API checks destinations by its egress rule
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        tls = http_tls(c)
        worker = getattr(self.gateway.cluster, "fd", None) is not None  # --reuseport worker
        # the workers of --reuseport share the HTTP port too (the kernel spreads connections)
        site = web.TCPSite(self._runner, c.http_host, c.http_port, ssl_context=tls,
                           reuse_port=worker or None)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # the real one, for port 0
        # one process per host and port: a restarted backend takes its own lease back at once
        # (--reuseport workers share the port: the server id tells them apart)
        node = f"{socket.gethostname()}:{self.http_port}"
        self.notifier.start(node=f"{node}/{self.gateway.cluster.server_id}" if worker else node)
        host = "localhost" if c.http_host in ("127.0.0.1", "::1", "0.0.0.0", "::") else c.http_host
        scheme = "https" if tls else "http"
        print(f"backend ready: dashboard {scheme}://{host}:{self.http_port}/ "
              f"gateway udp {c.quic_host}:{self.gateway.port}", flush=True)

    def _seed_hub(self, positions: list[dict], now_ms: int) -> None:
        """The hub starts from each vehicle's stored last position, except one whose time lies
        outside the sane window (stored before the gateway refused such readings): as the
        newest it would hide every live position until that time, so it is left out."""
        window = self.gateway.ts_window
        for r in positions:
            if not window.min_ms <= r["time_ms"] <= now_ms + window.max_ahead_ms:
                log.warning("stored last position of %s at %d ms is outside the sane time "
                            "window: not shown", r["vehicle_id"], r["time_ms"])
                continue
            self.hub.seed(r["vehicle_id"], r["time_ms"], position_feature(
                r["vehicle_id"], r["time_ms"], r["lat"], r["lon"], r["speed_kmh"],
                r["course_deg"], r["seq"]))

    def _add_mcp_and_maintenance(self) -> None:
        """The MCP endpoint (/mcp) and the maintenance checks on their own timer."""
        from .api.common import DRIVING, MAINTENANCE
        from .maintenance.monitor import MaintenanceMonitor
        from .mcp.http import add_mcp_routes
        from .mcp.tools import FleetTools

        cfg = self.config.maintenance_config()
        fleet_tools = FleetTools(self.store, self.alerts.rules, cfg, self.gateway.downlink.send,
                                 planning=self.planning, etas=self.dispatch.etas)
        fleet_tools.driving = self.config.driving_config()
        fleet_tools.notify = self.notifier.settings  # subscriptions: the egress rule, mail
        add_mcp_routes(self.app, fleet_tools)
        self.maintenance = MaintenanceMonitor(self.store, cfg, self.hub.publish_alert)
        self.app[MAINTENANCE] = self.maintenance  # recording a service closes its alert
        self.app[DRIVING] = self.config.driving_config()
        if cfg.intervals or cfg.health:
            self._maintenance_timer = asyncio.get_running_loop().create_task(
                self._maintenance_clock(cfg.check_every_s), name="maintenance-timer")

    async def _maintenance_clock(self, every_s: float) -> None:
        while True:
            try:
                await self.maintenance.check(wall_ms())
            except Exception as exc:  # the store may be away; the next round retries
                self.maintenance.stats["failures"] += 1
                log.warning("maintenance check failed: %s", exc)
            await asyncio.sleep(every_s)

    async def _sweep_clock(self) -> None:
        """Parts of images that never completed, dropped at their age limit (docs/operations.md
        "Dead letters of vehicle actions"), every SWEEP_EVERY_S from the start."""
        while True:
            try:
                await self.vehicle_actions.sweep(wall_ms())
            except Exception as exc:  # the store may be away; the next round retries
                log.warning("sweep of stale image parts failed: %s", exc)
            await asyncio.sleep(SWEEP_EVERY_S)

    async def _replication_clock(self) -> None:
        while True:
            try:
                message = self.db_watch.observe(await self.store.replication())
                if message:
                    (log.warning if self.db_watch.alarm else log.info)(message)
            except Exception as exc:  # the database away: the writer says so already
                self.db_watch.failed()
                log.debug("replication check failed: %s", exc)
            await asyncio.sleep(CHECK_EVERY_S)

    async def _alert_clock(self) -> None:
        """Clock-driven alert rules (stale, offline) every `alert_timer_s`."""
        while True:
            await asyncio.sleep(self.config.alert_timer_s)
            await self.alerts.on_timer(wall_ms(), self.gateway.connections.keys())

    async def stop(self) -> None:
        """Stop accepting, commit and acknowledge everything in flight, then close."""
        for timer in (self._alert_timer, self._maintenance_timer, self._replication_timer,
                      self._sweep_timer):
            if timer is not None:
                timer.cancel()
        self.gateway.stop_accepting()
        await self.courier.close()  # routes being stored as commands
        await self.writer.stop()
        await self.gateway.finish_in_flight()
        await self.gateway.stop()
        await self.alerts.flush()  # deferred alert checkpoints
        if self.owners is not None:  # the others adopt this process's vehicles
            await self.owners.stop()
        await self.notifier.stop()
        if self.fanout is not None:
            await self.fanout.stop()
        if self._runner:
            await self._runner.cleanup()
        if self.replanner is not None:
            self.replanner.close()
        if self.planning is not None:
            await self.planning.close()
        await self.store.close()
        log.info("backend stopped")


# The `planning` extra (pyproject.toml): the road graph and the solver. The Debian package
# leaves it out (docs/planning.md); without it plans answer 503 and ETAs use straight lines.
PLANNING_MODULES = ("osmium", "scipy", "vroom")


def missing_planning_modules() -> list[str]:
    """Which of the planning extra's modules this installation lacks."""
    import importlib.util

    return [m for m in PLANNING_MODULES if importlib.util.find_spec(m) is None]


def _roads(c: BackendConfig):
    """The configured road network, or None when there is none or the planning extra is
    missing (said once in the log)."""
    from pathlib import Path

    if not c.road_network:
        return None
    missing = missing_planning_modules()
    if missing:
        log.warning("road network %s ignored: the planning extra is not installed (%s); "
                    "pip install 'fleet-agent[planning]'", c.road_network, ", ".join(missing))
        return None
    return Path(c.road_network)


def street_overlay(c: BackendConfig) -> str:
    """With a road network and no basemap configured: its streets as the map overlay (built
    once per extract, cached; docs/planning.md), else ""."""
    if not c.road_network or c.map_style or c.map_pmtiles or _roads(c) is None:
        return ""
    from pathlib import Path

    from .dispatch.roads import RoadNetworkError, default_cache_dir
    from .dispatch.streetmap import cached_street_overlay

    try:
        return str(cached_street_overlay(Path(c.road_network), Path(c.road_cache_dir)
                                         if c.road_cache_dir else default_cache_dir()))
    except RoadNetworkError as exc:
        log.warning("no street map from the road network: %s", exc)
        return ""


def eta_service(c: BackendConfig, store, hub, publish_alert):
    """Live ETAs on the configured roads (the graph loaded at the first live route, from the
    cache the planner fills), else on the straight line."""
    from pathlib import Path

    from .dispatch.eta_service import EtaService
    from .dispatch.solver_worker import travel_source

    roads = _roads(c)

    def travel():
        return travel_source(roads, Path(c.road_cache_dir) if c.road_cache_dir else None,
                             learned=True)

    return EtaService(store, travel, hub.publish_dispatch, publish_alert)


def notifier(c: BackendConfig, store):
    """Notifications (docs/notifications.md): subscriptions delivered from the outbox."""
    from .notify.service import Notifier, channels_of

    settings = c.notify_settings()
    return Notifier(store, settings, channels_of(settings))


def planning_service(c: BackendConfig, store, dispatch):
    """Plans in their own process (started at the first plan) on the configured roads."""
    from pathlib import Path

    from .dispatch.planning import PlanningService
    from .dispatch.solver_worker import SolverWorker

    if missing_planning_modules():
        log.warning("planning off: the planning extra is not installed; "
                    "pip install 'fleet-agent[planning]'")
        return None
    worker = SolverWorker(_roads(c), Path(c.road_cache_dir) if c.road_cache_dir else None)
    return PlanningService(store, dispatch, worker, wall_ms)


def auth_state(c: BackendConfig, store):
    """The access middleware's settings from the configuration."""
    from .auth import AuthState
    from .auth.addresses import parse_networks
    from .auth.sessions import SessionPolicy

    return AuthState(store=store,
                     policy=SessionPolicy(idle_s=c.session_idle_s, absolute_s=c.session_max_s),
                     trusted_proxies=parse_networks(c.trusted_proxies),
                     allowed_origins=tuple(c.allowed_origins))


def http_tls(c: BackendConfig):
    """A server TLS context for the HTTP listener when a certificate is configured."""
    if not c.http_cert:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(c.http_cert, c.http_key or None)
    return ctx


async def run(config: BackendConfig, cluster=None) -> None:
    backend = Backend(config, cluster)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await backend.start()
    gc_policy.after_start()
    recorder = loop_stalls.StallRecorder()
    stalls = loop.create_task(loop_stalls.watch(recorder), name="loop-stalls")
    try:
        await stopping.wait()
    finally:
        stalls.cancel()
        if recorder.stalls:
            log.warning("at stop: %s", recorder.summary())
        await backend.stop()
