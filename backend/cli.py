"""`python -m backend` — serve (default), migrate, vehicles add|revoke|list, users, groups,
command, notifications, query, gen-certs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys

from . import __version__
from .cli_command import add_api_flags, send_command
from .cli_query import query_parser, run_query
from .cli_secrets import warn_secrets_in_argv
from .config import BackendConfig, load_toml

# The router's tunnel socket without --tunnel: loopback, so nothing beyond this machine can
# reach it until the operator names the private address (docs/scaling.md §4).
DEFAULT_TUNNEL = "127.0.0.1:4434"


def _parser() -> argparse.ArgumentParser:
    d = BackendConfig()
    p = argparse.ArgumentParser(
        prog="python -m backend",
        description="fleet-agent backend: QUIC gateway (geostream/1.0), persistence and live "
        "map. Settings come from flags, or from a TOML file (--config) with the same keys "
        "(underscores for dashes); flags win.",
    )
    p.add_argument("--version", action="version", version=f"fleet-backend {__version__}")
    p.add_argument("--config", help="TOML file with any of the settings below")
    p.add_argument("--db", help=f"store URL: sqlite:///path or postgresql://… (default {d.db})")
    p.add_argument("--quic-host", help=f"UDP address of the gateway (default {d.quic_host})")
    p.add_argument("--quic-port", type=int, help=f"UDP port (default {d.quic_port})")
    p.add_argument("--quic-library", choices=["aioquic", "qh3"],
                   help="QUIC library of the gateway (default: $FLEET_QUIC_LIBRARY, else "
                        "qh3 alone, aioquic with --server-id or --reuseport)")
    p.add_argument("--http-host", help=f"dashboard/WebSocket address (default {d.http_host})")
    p.add_argument("--http-port", type=int, help=f"dashboard port (default {d.http_port})")
    p.add_argument("--cert", help=f"gateway TLS certificate (default {d.cert})")
    p.add_argument("--key", help=f"gateway TLS key (default {d.key})")
    p.add_argument("--http-cert", help="TLS certificate (PEM chain) for the dashboard/API "
                   "listener: HTTPS and Secure cookies (default: plain HTTP)")
    p.add_argument("--http-key", help="its private key (default: in --http-cert)")
    p.add_argument("--trusted-proxy", dest="trusted_proxies", action="append",
                   help="address or CIDR of a reverse proxy whose X-Forwarded-For/-Proto are "
                   "believed (repeatable; default none)")
    p.add_argument("--session-idle-s", type=float,
                   help=f"log a browser out after this long unused (default {d.session_idle_s:g})")
    p.add_argument("--session-max-s", type=float,
                   help=f"and this long after login in any case (default {d.session_max_s:g})")
    p.add_argument("--writer-max-rows", type=int,
                   help=f"largest transaction in rows (default {d.writer_max_rows})")
    p.add_argument("--writer-linger-ms", type=int,
                   help=f"wait this long to grow a transaction (default {d.writer_linger_ms})")
    p.add_argument("--writer-interval-ms", type=int,
                   help="start a transaction at most this often (default "
                   f"{d.writer_interval_ms})")
    p.add_argument("--reading-min-time",
                   help="readings observed before this UTC date (or date-time) are refused as "
                   "invalid: dead-lettered, never a position (default "
                   f"{d.reading_min_time})")
    p.add_argument("--reading-max-ahead-s", type=float,
                   help="and readings more than this many seconds ahead of the gateway's clock "
                   f"(default {d.reading_max_ahead_s:g}: a day)")
    p.add_argument("--ticket-file",
                   help="SQLite file for the gateway's TLS session tickets, mode 0600, or a "
                   "postgresql:// URL shared by gateway nodes (docs/scaling.md) (default: "
                   "gateway-tickets.sqlite next to an SQLite --db, else in /var/lib/fleet-backend)")
    p.add_argument("--map-style", help="MapLibre style URL for the web app's basemap "
                   "(default: the built-in offline map)")
    p.add_argument("--map-pmtiles", help="local .pmtiles archive (raster or vector) served to "
                   "the web app as its basemap")
    p.add_argument("--map-overlay", help="GeoJSON file drawn over the basemap (roads, depots)")
    p.add_argument("--road-network", help="OpenStreetMap extract (.osm.pbf) for dispatch "
                   "travel times (default: straight line × detour factor; docs/planning.md)")
    p.add_argument("--road-cache-dir", help="where the road graph built from it is cached "
                   "(default $XDG_CACHE_HOME/fleet-agent/roads)")
    p.add_argument("--arrival-dwell-s", type=float, help="seconds a vehicle stays inside a "
                   f"stop before it has arrived (default {d.arrival_dwell_s:g}; docs/dispatch.md)")
    p.add_argument("--server-id", type=int, help="gateway node behind a router: its server id "
                   "in connection IDs, 0..65535 (docs/scaling.md; default: no router)")
    p.add_argument("--router", help="the router's tunnel address HOST:PORT (with --server-id)")
    p.add_argument("--cluster-key-file", help="the cluster's tunnel key, mode 0600 (router "
                   "and nodes; `gen-cluster-key`; docs/scaling.md)")
    p.add_argument("--nats-url", help="NATS server for live fan-out between nodes, "
                   "nats://HOST:4222 or tls://HOST:4222 (docs/scaling.md; default: none, "
                   "in-process hub); credentials go in the files below, not in the URL")
    p.add_argument("--nats-user", help="NATS user (with --nats-password-file)")
    p.add_argument("--nats-password-file", help="file holding the NATS user's password (0600)")
    p.add_argument("--nats-token-file", help="file holding a NATS token (0600)")
    p.add_argument("--nats-tls-ca", help="CA file of nats-server's certificate (turns TLS on)")
    p.add_argument("--nats-tls-cert", help="client certificate for NATS TLS (with --nats-tls-key)")
    p.add_argument("--nats-tls-key", help="its private key")
    p.add_argument("--reuseport", type=int, metavar="N",
                   help="run N gateway processes on the one UDP port, each vehicle's "
                   "datagrams steered to its process by connection ID (needs PostgreSQL and "
                   "--nats-url; docs/scaling.md §4; default one process)")
    # internal: a worker of --reuseport started by its supervisor, SERVER_ID:FD of its socket
    p.add_argument("--reuseport-worker", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run gateway, writer, hub and dashboard (the default)")
    rt = sub.add_parser("router", help="stateless UDP router to gateway nodes by connection "
                        "ID (docs/scaling.md)")
    rt.add_argument("--listen", default="[::]:4433", help="vehicles' UDP address (default "
                    "[::]:4433)")
    rt.add_argument("--tunnel", default=DEFAULT_TUNNEL, help="UDP address the nodes talk to: "
                    "this router's address on the cluster's private network, never the "
                    f"wildcard (default {DEFAULT_TUNNEL}: nodes on this machine only)")
    rt.add_argument("--advertise", default="", help="the address vehicles reach this router "
                    "at, published as its health on --nats-url (default: the --listen host)")
    dns = sub.add_parser("dns", help="authoritative DNS for the routers' name: the healthy "
                         "routers only, from their health on --nats-url (docs/scaling.md)")
    dns.add_argument("--name", required=True, help="the name vehicles resolve, e.g. "
                     "gw.fleet.example.")
    dns.add_argument("--listen", default="[::]:53", help="UDP address (default [::]:53)")
    sub.add_parser("migrate", help="apply pending schema migrations and exit")
    veh = sub.add_parser("vehicles", help="provision and revoke vehicle credentials")
    vsub = veh.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = vsub.add_parser("add", help="create (or re-key) a vehicle; prints its token once")
    add.add_argument("vehicle_id")
    rev = vsub.add_parser("revoke", help="revoke a vehicle; open connections are closed")
    rev.add_argument("vehicle_id")
    vsub.add_parser("list", help="list vehicles as JSON lines")
    let = vsub.add_parser("letters", help="list the vehicle actions the backend could not "
                          "apply (dead letters, with their errors) as JSON lines; replay one "
                          "with POST /api/action-letters/V/EPOCH/SEQ/replay")
    let.add_argument("--state", choices=("failing", "dead", "replayed", "refused"))
    let.add_argument("--vehicle", help="only this vehicle's")
    cmd = sub.add_parser("command", help="send a downlink command to a vehicle through the "
                         "running backend's HTTP API and wait for the agent's answer")
    cmd.add_argument("vehicle_id")
    cmd.add_argument("name", help="command name, e.g. ping")
    cmd.add_argument("--args", default="{}", help="JSON object of arguments")
    cmd.add_argument("--wait", type=float, default=30.0,
                     help="seconds to wait for the answer (0: do not wait)")
    add_api_flags(cmd, "dispatcher")
    from .notify.cli import notifications_parser

    notifications_parser(sub)
    from .auth.cli import add_parsers

    add_parsers(sub)
    query_parser(sub)
    from .dispatch.cli import jobs_parser

    jobs_parser(sub)
    from .maintenance.cli import service_parser

    service_parser(sub)
    mcp = sub.add_parser("mcp", help="MCP server over stdio for AI clients (docs/mcp.md)")
    mcp.add_argument("--token-file", help="file holding a user's API token (`users token "
                     "NAME`); default: $FLEET_API_TOKEN")
    ck = sub.add_parser("gen-cluster-key", help="create the cluster's tunnel key (router and "
                        "nodes share it; docs/scaling.md)")
    ck.add_argument("--out", required=True, help="the key file to create, mode 0600")
    certs = sub.add_parser("gen-certs", help="create a private CA and a gateway certificate")
    certs.add_argument("--out", required=True, help="directory for ca.pem, server.pem/.key")
    certs.add_argument("--name", action="append", default=[],
                       help="DNS name or IP of the gateway (repeatable; default localhost, "
                       "127.0.0.1, ::1)")
    return p


def build_config(args: argparse.Namespace) -> BackendConfig:
    values = load_toml(args.config) if args.config else {}
    for key in BackendConfig.keys():
        flag = getattr(args, key, None)
        if flag is not None:
            values[key] = flag
    config = dataclasses.replace(BackendConfig(), **values)
    from .auth.addresses import parse_networks

    parse_networks(config.trusted_proxies)  # a typo is a configuration error, not a crash later
    config.cluster_node()  # the tunnel key is readable, private and a key
    if config.nats_settings() is not None:
        config.nats_settings().connect_options()  # credential files are readable and private
    if bool(config.http_cert) < bool(config.http_key):
        raise ValueError("http_key without http_cert")
    return config


async def _with_store(config: BackendConfig, action, migrate: bool = True):
    from .store import open_store

    store = open_store(config.db)
    await store.open(migrate=migrate)
    try:
        return await action(store)
    finally:
        await store.close()


def _serve(config: BackendConfig, args: argparse.Namespace, argv: list[str]) -> int:
    """One backend process, or with `reuseport` N > 1 the supervisor of N gateway workers
    (backend/cluster/workers.py), or one of those workers."""
    from .service import run

    if args.reuseport_worker:
        from .cluster.reuseport import ReuseportNode
        from .cluster.workers import parse_worker_flag

        node = ReuseportNode(*parse_worker_flag(args.reuseport_worker))
        asyncio.run(run(config, cluster=node))
        return 0
    if config.reuseport > 1:
        from .cluster.workers import run_supervisor

        try:
            return run_supervisor(argv, config.quic_host, config.quic_port, config.reuseport)
        except OSError as exc:
            print(f"backend: cannot bind udp {config.quic_host}:{config.quic_port}: {exc}",
                  file=sys.stderr)
            return 2
    asyncio.run(run(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warn_secrets_in_argv(args)
    command = args.command or "serve"
    if command == "serve":
        from .web import bundle_problem

        if (problem := bundle_problem()) is not None:
            print(f"backend: {problem}", file=sys.stderr)
            return 2
    try:
        config = build_config(args)
    except (OSError, ValueError, TypeError) as exc:
        print(f"backend: bad configuration: {exc}", file=sys.stderr)
        return 2
    if command == "serve":
        return _serve(config, args, sys.argv[1:] if argv is None else argv)
    if command == "router":
        from .cluster.edge import run_router
        from .cluster.node import check_tunnel_host, parse_addr
        from .cluster.tunnel import load_key

        try:
            if not config.cluster_key_file:
                raise ValueError("the router needs --cluster-key-file (gen-cluster-key)")
            key = load_key(config.cluster_key_file)
            tunnel_addr = parse_addr(args.tunnel)
            check_tunnel_host(tunnel_addr[0], "--tunnel")
        except (OSError, ValueError) as exc:
            print(f"backend router: {exc}", file=sys.stderr)
            return 2
        asyncio.run(run_router(parse_addr(args.listen), tunnel_addr, key,
                               config.nats_settings(), args.advertise))
        return 0
    if command == "dns":
        from .cluster.discovery import run_dns
        from .cluster.node import parse_addr

        if not config.nats_url:
            raise SystemExit("dns needs --nats-url (the routers' health)")
        asyncio.run(run_dns(args.name, parse_addr(args.listen), config.nats_settings()))
        return 0
    if command == "migrate":
        async def migrate(store):
            applied = await store.migrate()
            if hasattr(store, "maintain"):  # partitions ahead / retention, right away
                await store.maintain()
            return applied

        # opened without migrating, so the list says what this command applied
        applied = asyncio.run(_with_store(config, migrate, migrate=False))
        print(f"migrations applied: {', '.join(applied) or 'none pending'}")
        return 0
    if command == "command":
        return asyncio.run(send_command(config, args))
    if command in ("users", "groups"):
        from .auth.cli import run

        return asyncio.run(_with_store(config, lambda s: run(args, s)))
    if command == "query":
        try:
            answer = asyncio.run(_with_store(config, lambda s: run_query(args, s)))
        except (ValueError, OSError) as exc:
            print(f"backend query: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(answer, indent=None, separators=(",", ":")))
        return 0
    if command == "jobs":
        from geostream.clock import wall_ms

        from .dispatch.cli import run_jobs

        args.road_network = config.road_network  # `jobs plan`: flags or the TOML file
        args.road_cache_dir = config.road_cache_dir
        try:
            return asyncio.run(_with_store(config, lambda s: run_jobs(args, s, wall_ms())))
        except OSError as exc:
            print(f"backend jobs: {exc}", file=sys.stderr)
            return 2
    if command == "service":
        from .auth.cli import CLI_USER
        from .maintenance.cli import run_service

        cfg = config.maintenance_config()
        return asyncio.run(_with_store(config, lambda s: run_service(args, s, cfg, CLI_USER)))
    if command == "notifications":
        from .notify.cli import run_notifications

        return asyncio.run(run_notifications(config, args))
    if command == "mcp":
        from .mcp.stdio import serve_stdio

        return asyncio.run(serve_stdio(config, args.token_file))
    if command == "gen-cluster-key":
        from .cluster.tunnel import write_key

        write_key(args.out)
        print(args.out)
        return 0
    if command == "gen-certs":
        from .pki import generate

        files = generate(args.out, args.name or ["localhost", "127.0.0.1", "::1"])
        print(json.dumps(files))
        return 0
    if command == "vehicles":
        from .auth.cli import audited

        if args.action == "add":
            token = asyncio.run(_with_store(config, audited(
                lambda s: s.add_vehicle(args.vehicle_id), "vehicle.create", args.vehicle_id)))
            print(token)
        elif args.action == "revoke":
            ok = asyncio.run(_with_store(config, audited(
                lambda s: s.revoke_vehicle(args.vehicle_id), "vehicle.revoke", args.vehicle_id)))
            if not ok:
                print(f"no active vehicle {args.vehicle_id!r}", file=sys.stderr)
                return 1
        elif args.action == "letters":
            for row in asyncio.run(_with_store(config, lambda s: s.action_letters(
                    args.state, args.vehicle))):
                print(json.dumps(row, sort_keys=True))
        else:
            for v in asyncio.run(_with_store(config, lambda s: s.list_vehicles())):
                print(json.dumps(v))
        return 0
    return 2
