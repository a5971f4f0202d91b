"""QUIC gateway: authenticates vehicles, validates batches, acks only after commit.

`Gateway` is what all connections share: the server socket, store, writer, hub, credit,
the open sessions per vehicle, revocations, its counters (`gateway_stats`) and the downlink
commands (`downlink`). One connection and the pipeline of
its batches is `backend.gateway_conn.GatewayProtocol`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from geostream import ALPN
from geostream.clock import wall_ms
from geostream.errors import ErrorCode
from geostream.limits import DEFAULT_CREDIT, IDLE_TIMEOUT_S
from geostream.messages import Status
from geostream.quic import gateway_library_name, library
from geostream.schema import DEFAULT_WINDOW, TimeWindow

from .alerts import NoAlerts
from .dispatch.service import Dispatcher
from .downlink import CommandDownlink
from .gateway_conn import GatewayProtocol
from .gateway_edge import EdgeServer, UdpEdge
from .gateway_ingest import Ingest
from .gateway_stats import GatewayStats
from .hub import Hub
from .metrics import ACK_BUCKETS_S, LoopHistogram
from .quic_tuning import enlarge_socket_buffers
from .store.protocols import Store
from .tickets import TicketStore
from .writer import BatchWriter

if TYPE_CHECKING:
    from .cluster.tickets import SharedTicketStore

log = logging.getLogger(__name__)

# Flow control (docs/protocol.md §6): credit shrinks as the writer's backlog grows, so a slow
# database slows the vehicles instead of growing gateway memory.
BACKLOG_HIGH = 20_000
MIN_CREDIT = 64
MAX_CREDIT = DEFAULT_CREDIT
# Time for the last acks to leave before connections close at shutdown (loopback to a few RTTs).
ACK_GRACE_S = 0.3
# How often revocations made by `python -m backend vehicles revoke` reach open connections.
REVOCATION_POLL_S = 2.0
# The longest a batch waits for its commit before the session is ended with `internal` (the
# agent reconnects and re-sends; nothing is lost): longer than a PostgreSQL restart or failover
# (10–30 s), so a short outage does not disconnect the fleet, short enough that a stuck writer
# is noticed by every vehicle within a minute instead of never.
ACK_WAIT_S = 60.0


def credit_for(backlog_rows: int, vehicles: int, backlog_high: int = BACKLOG_HIGH) -> int:
    """Credit per vehicle from the writer backlog (docs/protocol.md §6)."""
    room = (backlog_high - backlog_rows) // max(1, vehicles)
    return max(MIN_CREDIT, min(MAX_CREDIT, room))


class Gateway:
    """Shared state of all connections: store, writer, hub, open sessions per vehicle."""

    def __init__(self, store: Store, writer: BatchWriter, hub: Hub,
                 backlog_high: int = BACKLOG_HIGH, ticket_file: str = ":memory:",
                 alerts=None, cluster=None, dispatch=None,
                 ts_window: TimeWindow = DEFAULT_WINDOW, ack_wait_s: float = ACK_WAIT_S,
                 quic_library: str | None = None):
        self.backlog_high = backlog_high
        # the QUIC library behind the seam (geostream/quic/): its adapter module, picked again
        # at start() for the `cluster` then set (gateway_library_name: qh3 alone and on
        # --reuseport workers, aioquic behind the router)
        self.quic_library = quic_library
        self.quic = library(gateway_library_name(
            quic_library, cid_routed=cluster is not None,
            relayed=getattr(cluster, "relays_cids", False)))
        self.draining = False
        self.store = store
        self.writer = writer
        # the database's backend/dbwatch.py ReplicationWatch (set by the Backend; metrics)
        self.db_replication = None
        self.hub = hub
        # alert rules run after each commit (backend/alerts/); NoAlerts where none are wanted
        self.alerts = alerts if alerts is not None else NoAlerts()
        # arrival detection for vehicles on a live route, and the dispatch API's service
        self.dispatch = dispatch if dispatch is not None else Dispatcher(
            store, getattr(hub, "publish_dispatch", None))
        # each connected vehicle's connections: one as a rule, two while a reconnect overlaps
        # the old one's end (a list: an empty set is 216 bytes per connected vehicle)
        self.connections: dict[str, list[GatewayProtocol]] = {}
        # in a cluster, the store's record of which process owns each vehicle (set by the
        # Backend; backend/cluster/owners.py): told of every connection and disconnection
        self.owners = None
        # the one applier of driver actions (backend/driver/), for `act` readings
        # (docs/protocol.md §4): async (vehicle, readings, now_ms), raising when it cannot
        # returns the (seq, why) of readings to dead-letter (image parts, revision 4)
        self.driver_actions: Callable[[str, list, int], Awaitable[list | None]] | None = None
        self.stats = GatewayStats()
        # downlink commands (docs/protocol.md §3 command), sent on the vehicle's sessions here
        self.downlink = CommandDownlink(store, lambda vehicle: self.connections.get(vehicle, ()),
                                        self.stats)
        # a reading's `ts` outside this window is invalid (docs/protocol.md §4)
        self.ts_window = ts_window
        self.ack_wait_s = ack_wait_s
        # the batch path of all connections: commit, ack, publish, alerts (gateway_ingest)
        self.ingest = Ingest(self)
        # batch received → ack sent (GET /metrics); not in a global registry
        self.ack_latency = LoopHistogram("fleet_ack_latency_seconds",
                                         "Batch received to ack sent", ACK_BUCKETS_S)
        self._server: EdgeServer | None = None  # the UDP edge: every connection's datagrams
        self._revocation_task: asyncio.Task | None = None
        # session tickets for resumption / 0-RTT (docs/protocol.md §8), opened by start()
        self.ticket_file = ticket_file
        self.tickets: TicketStore | SharedTicketStore | None = None
        # behind a router (backend/cluster/, docs/scaling.md): a ClusterNode, else None
        self.cluster = cluster
        # with NATS: the node's NatsFanout, for its counters in /metrics (backend/service.py)
        self.fanout = None

    def credit(self) -> int:
        return credit_for(self.writer.stats.backlog_rows, len(self.connections),
                          self.backlog_high)

    async def status_received(self, vehicle: str, status: Status) -> None:
        """The agent's report replaces its last one (protocol.md §3 status)."""
        try:
            await self.store.save_vehicle_status(vehicle, status.as_json(), wall_ms())
        except Exception as exc:  # bookkeeping only: the next report comes in 30 s
            log.warning("cannot keep the status of %s: %s", vehicle, exc)

    async def start(self, host: str, port: int, certfile: str, keyfile: str) -> None:
        self.quic = library(gateway_library_name(
            self.quic_library, cid_routed=self.cluster is not None,
            relayed=getattr(self.cluster, "relays_cids", False)))
        cfg = self.quic.QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                          idle_timeout=IDLE_TIMEOUT_S)
        cfg.load_cert_chain(certfile, keyfile)
        if self.ticket_file.startswith(("postgresql://", "postgres://")):
            from .cluster.tickets import SharedTicketStore  # every node's (docs/scaling.md)

            tickets: TicketStore | SharedTicketStore = await SharedTicketStore(
                self.ticket_file, lib=self.quic).start()
        else:
            tickets = TicketStore(self.ticket_file, lib=self.quic)
        self.tickets = tickets
        server = EdgeServer(
            self.quic, configuration=cfg,
            create_protocol=lambda quic, edge: GatewayProtocol(quic, edge, gateway=self),
            session_ticket_fetcher=tickets.pop, session_ticket_handler=tickets.add)
        if self.cluster is None:
            await UdpEdge.open(server, host, port)
        else:
            cluster = self.cluster  # a Retry's CID routes back here (its server id)
            server.retry_cid = lambda: cluster.layout.encode(cluster.server_id)
            await self.cluster.serve(self.quic, host, port, server=server)
        self._server = server
        enlarge_socket_buffers(server)
        self._revocation_task = asyncio.get_running_loop().create_task(self._watch_revocations())
        log.info("gateway listening on udp %s:%d (ALPN %s, %s)", host, self.port, ALPN,
                 self.quic.NAME)

    @property
    def port(self) -> int:
        """The UDP port the gateway listens on: the kernel's choice when started on port 0."""
        assert self._server is not None, "started"
        return self._server._transport.get_extra_info("sockname")[1]

    def stop_accepting(self) -> None:
        """First step of a graceful stop: new sessions and new batches are ignored (agents keep
        them in their journals); batches already submitted still commit and get their acks."""
        self.draining = True

    async def finish_in_flight(self, timeout: float = 5.0) -> None:
        """Wait until every submitted batch has been acknowledged (or the timeout passed)."""
        started = asyncio.get_running_loop().time()
        await self.ingest.settled(timeout)
        tasks = [t for conns in self.connections.values() for p in conns for t in p.in_flight()]
        left = timeout - (asyncio.get_running_loop().time() - started)
        if tasks and left > 0:
            await asyncio.wait(tasks, timeout=left)
        # one more loop turn per connection so the ack packets leave before CONNECTION_CLOSE
        await asyncio.sleep(ACK_GRACE_S)

    async def stop(self) -> None:
        if self._revocation_task:
            self._revocation_task.cancel()
        if self._server is not None:
            self._log_totals(self._server)
        for conns in list(self.connections.values()):
            for proto in list(conns):
                proto.close_connection(0, "server shutting down")
        if self._server:
            self._server.close()
        if self.tickets is not None:
            self.tickets.close()
            self.tickets = None

    @staticmethod
    def _log_totals(server: EdgeServer) -> None:
        """One line of the edge's counts at stop, a warning when it shed or refused anything
        (docs/protocol.md §1, overload: the load tester's report quotes it)."""
        s, a = server.stats, server.admission
        shed = (s["retry"] + s["refused_busy"] + s["refused_intake_wait"]
                + s["refused_intake_full"] + s["invalid_token"] + a.abandoned)
        log.log(logging.WARNING if shed else logging.INFO, "gateway edge totals: %s",
                server.totals())

    async def _watch_revocations(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_POLL_S)
            try:
                revoked = await self.store.revoked_vehicles()
            except Exception as exc:
                log.warning("cannot read revocations: %s", exc)
                continue
            for vehicle in revoked & self.connections.keys():
                for proto in list(self.connections.get(vehicle, ())):
                    proto.refuse(ErrorCode.REVOKED, "credential revoked")

    def register(self, vehicle: str, proto: GatewayProtocol) -> None:
        conns = self.connections.setdefault(vehicle, [])
        if proto not in conns:
            conns.append(proto)
        self.alerts.reconnected(vehicle)  # its cached alert state carries on (or is checked)
        self.dispatch.forget(vehicle)  # its arrival detector starts from the store
        if self.owners is not None:  # this process owns it now (backend/cluster/owners.py)
            self.owners.connected(vehicle)

    def unregister(self, vehicle: str | None, proto: GatewayProtocol) -> None:
        if vehicle and vehicle in self.connections:
            conns = self.connections[vehicle]
            if proto in conns:
                conns.remove(proto)
            if not conns:
                del self.connections[vehicle]
                self.alerts.disconnected(vehicle)  # its cached state kept, within a bound
                if self.owners is not None:
                    self.owners.disconnected(vehicle)
