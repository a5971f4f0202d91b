"""What the rest of the backend may ask of a store: one Protocol per concern, named and split as
the modules of backend/store/sqlite/ and backend/store/postgres/ are, and `Store`, all of them.

Both stores satisfy every Protocol: `make lint` runs mypy on backend/store/conformance.py,
which assigns a `SqliteStore` and a `PostgresStore` to variables of each type. A method the
backend calls belongs here first; a store-only helper (PostgreSQL's `set_policy`, say) does not.
A new concern adds its module to both packages, its Protocol here (and to `Store`), and its
lines to conformance.py.

What an implementation needs from its host is declared by the host class every concern's mixin
derives from: `sqlite.db.SqliteDb` (the connection `_db`, `_run` on the one worker thread) and
`postgres.db.PostgresDb` (the pools `_pool` and `_write_pool`, the latter on the writer's own loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from .base import AuthResult
from .rows import AlertQuery, DeadLetter, StoredAlert, StoredCommand, StoredReading

if TYPE_CHECKING:  # dispatch's vocabulary (backend/dispatch/), for the annotations only
    from ..dispatch.model import FleetVehicle, Job, JobRecord, JobState, Route, Transition
    from ..dispatch.storage import JobQuery, StoredProposal
    from ..links.model import TrackingLink
    from ..links.storage import ClaimResult


class Db(Protocol):
    """The connection's life (db.py)."""

    async def open(self, migrate: bool = True) -> None:
        """Connect, and apply the pending migrations unless told not to."""
    async def close(self) -> None: ...
    async def migrate(self) -> list[str]:
        """Apply the pending migrations (sql/<dialect>/); the names applied, in order."""
    def is_transient(self, exc: BaseException) -> bool:
        """True if the failure is the database's (retry later), False if the data's."""


class Vehicles(Protocol):
    """Registered vehicles and their tokens (vehicles.py)."""

    async def add_vehicle(self, vehicle_id: str) -> str:
        """Register (or re-register, un-revoking) the vehicle; its new token."""
    async def revoke_vehicle(self, vehicle_id: str) -> bool: ...
    async def list_vehicles(self) -> list[dict]: ...
    async def authenticate(self, vehicle_id: str, token: str) -> AuthResult: ...
    async def revoked_vehicles(self) -> set[str]: ...


class Readings(Protocol):
    """The write path (readings.py)."""

    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        """Store everything in one transaction; already-stored (vehicle, epoch, seq) are no-ops."""


class History(Protocol):
    """Queries over stored readings (history.py)."""

    async def last_positions(self) -> list[dict]: ...
    async def route(self, vehicle_id: str, start_ms: int, end_ms: int,
                    step_ms: int | None = None, limit: int | None = None) -> list[dict]:
        """Positions in [start, end) ordered by (time, epoch, seq); with `step_ms` only the
        first of each `time_ms // step_ms` bucket; at most `limit` (in SQL), read off the
        writer's connection."""
    async def last_fixes(self) -> dict[str, dict]: ...
    async def last_signals(self) -> dict[str, dict[str, dict]]: ...
    async def signal_series(self, vehicle_id: str, signal: str, start_ms: int, end_ms: int,
                            limit: int, newest_first: bool = False) -> list[tuple[int, float]]:
        """(time_ms, value) of one CAN signal in [start, end), by device time."""
    async def events(self, vehicle_id: str, name: str, start_ms: int, end_ms: int,
                     limit: int) -> list[tuple[int, dict]]:
        """(time_ms, data) of the vehicle's `evt` readings named `name`, oldest first."""
    async def signal_frames(self, vehicle_id: str, signals: list[str], start_ms: int,
                            end_ms: int, limit: int) -> list[tuple[int, dict]]:
        """(time_ms, {signal: value}) of the vehicle's `can` readings in [start, end) carrying
        any of `signals`, only those signals (numbers or text), oldest first."""
    async def readings_fingerprint(self, vehicle_id: str, start_ms: int, end_ms: int) -> str:
        """What the vehicle's readings in [start, end) are, in a few numbers (count, newest
        journal epoch, sum of sequence numbers): a reading added or removed changes it."""
    async def count_readings(self, vehicle_id: str | None = None) -> int: ...
    async def dead_letters(self) -> list[dict]: ...


class Geofences(Protocol):
    """Geofences and entries into them (geofences.py)."""

    async def put_geofence(self, geofence_id: str, name: str, area: dict,
                           speed_limit_kmh: float | None = None, circle: dict | None = None,
                           create_only: bool = False, group: str | None = None) -> bool:
        """Create or replace (Polygon/MultiPolygon) of `group` (None: fleet-wide); True if
        created."""
    async def geofences(self) -> list[dict]: ...
    async def geofence(self, geofence_id: str) -> dict | None: ...
    async def delete_geofence(self, geofence_id: str) -> bool: ...
    async def inside(self, geofence_id: str) -> list[dict] | None:
        """Last positions inside the geofence now; None if there is no such geofence."""
    async def geofence_entries(self, geofence_id: str, start_ms: int,
                               end_ms: int) -> list[dict]:
        """Outside→inside transitions in [start, end) in device-time order (queries.py)."""
    async def vehicle_geofence_entries(self, vehicle_id: str, start_ms: int,
                                       end_ms: int) -> list[dict]: ...


class Commands(Protocol):
    """Downlink commands and the agents' status reports (commands.py)."""

    async def add_command(self, vehicle_id: str, name: str, args: dict,
                          request_key: str | None = None) -> int:
        """Store a new command; its id is above `command_id_floor(now)` and every stored id.
        With `request_key`, a command of the vehicle stored with the same key is not stored
        again: its id is returned (a repeated request is harmless)."""
    async def pending_commands(self, vehicle_id: str) -> list[StoredCommand]:
        """The vehicle's commands without an answer, oldest first."""
    async def commands_sent(self, ids: list[int], now_ms: int) -> None:
        """Count one more sending of each command and remember when (the gateway counts just
        before it sends, so an answered command always shows at least one)."""
    async def answer_command(self, vehicle_id: str, command_id: int, ok: bool, detail: str,
                             now_ms: int, result: dict | None = None) -> bool:
        """Record the vehicle's first answer (with its structured `result`, if any); False if
        unknown, another vehicle's or answered."""
    async def save_vehicle_commands(self, vehicle_id: str, names: list[str],
                                    now_ms: int) -> None:
        """Keep the command set the vehicle advertised in its latest hello (protocol §3)."""
    async def vehicle_commands(self, vehicle_id: str) -> list[str] | None:
        """The vehicle's advertised command set; None if it never advertised one."""
    async def command(self, command_id: int) -> StoredCommand | None: ...
    async def commands_of(self, vehicle_id: str, limit: int) -> list[StoredCommand]:
        """The vehicle's commands, newest first."""
    async def save_vehicle_status(self, vehicle_id: str, status: dict, now_ms: int) -> None:
        """Keep the agent's latest status report (protocol.md §3 status), replacing the last."""
    async def vehicle_statuses(self) -> dict[str, dict]:
        """{vehicle: the agent's last status report, with its `time_ms`}."""


class Accounts(Protocol):
    """Users, API tokens, sessions, groups, audit (accounts.py; secrets arrive hashed)."""

    async def add_user(self, name: str, role: str, password_hash: str,
                       all_vehicles: bool = False) -> int:
        """A new user's id; ValueError if the name is taken. Without `all_vehicles` it sees
        only its groups' vehicles (none without a group)."""
    async def user(self, name: str) -> dict | None:
        """The user with its password hash (for logging in), or None."""
    async def users(self) -> list[dict]: ...
    async def update_user(self, name: str, role: str | None = None,
                          password_hash: str | None = None, disabled: bool | None = None,
                          all_vehicles: bool | None = None,
                          must_change_password: bool | None = None) -> bool:
        """Change what is given; a new password or disabling ends the user's sessions."""
    async def account(self, user_id: int) -> dict | None: ...
    async def add_api_token(self, name: str, label: str, token_hash: str) -> int | None: ...
    async def api_tokens(self, name: str) -> list[dict]: ...
    async def delete_api_token(self, name: str, token_id: int) -> bool: ...
    async def token_user(self, token_hash: str) -> int | None: ...
    async def add_session(self, id_hash: str, user_id: int, now_ms: int) -> None: ...
    async def session(self, id_hash: str) -> dict | None: ...
    async def touch_session(self, id_hash: str, now_ms: int) -> None: ...
    async def delete_session(self, id_hash: str) -> None: ...
    async def prune_sessions(self, seen_before_ms: int, created_before_ms: int) -> int: ...
    async def groups(self) -> list[dict]: ...
    async def put_group(self, name: str, vehicles: list[str] | None = None,
                        members: list[str] | None = None) -> None:
        """Create the group, and replace its vehicles and members where given."""
    async def delete_group(self, name: str) -> bool: ...
    async def add_audit(self, time_ms: int, user: str, action: str, target: str,
                        detail: dict | None) -> None: ...
    async def audit_entries(self, from_ms: int, to_ms: int, limit: int) -> list[dict]:
        """Entries in [from, to), newest first."""


class Alerts(Protocol):
    """Alert episodes and the evaluator's checkpoints (alerts.py; docs/alerts.md)."""

    def as_read_back(self, r: StoredReading) -> StoredReading:
        """A committed reading as `alert_readings` would return it (the column types)."""
    async def alert_readings(self, vehicle_id: str, after_ms: int | None) -> list[StoredReading]:
        """The vehicle's readings with time > after_ms (all if None) by (time, epoch, seq)."""
    async def alert_checkpoint(self, vehicle_id: str,
                               before_ms: int | None) -> tuple[int, dict] | None:
        """The newest evaluator checkpoint with time < before_ms (None: the newest)."""
    async def alerts_in_window(self, vehicle_id: str, after_ms: int | None) -> list[StoredAlert]:
        """Reading-driven alerts a re-evaluation from `after_ms` may change: open ones and
        those decided after it (all of the vehicle's if None)."""
    async def save_alerts(self, upserts: list, retract: list[tuple], now_ms: int,
                          checkpoints: tuple | None = None,
                          moves: Sequence = ()) -> list[tuple[StoredAlert, bool]]:
        """One transaction: upsert episodes by key, give the alert of each `(old key, episode)`
        move the episode's key and values (a retracted row holding that key goes), mark
        `retract` keys retracted, and with `checkpoints = (vehicle, after_ms, [(time_ms,
        state)])` replace the vehicle's checkpoints after `after_ms`. Returns each changed
        alert and whether it is new."""
    async def alert_readings_after(self, asks: Sequence[tuple[str, int | None]],
                                   held: Mapping[str, tuple[int, int, int]] | None = None
                                   ) -> dict[str, list[StoredReading]]:
        """`alert_readings` of many `(vehicle, after_ms)` at once (one query), by vehicle;
        vehicles without any left out. `held`: per vehicle, a run `(epoch, low, high)` of
        readings the caller holds already (committed rows, as `as_read_back` makes them), left
        out of the answer."""
    async def alert_checkpoints_before(self, asks: Sequence[tuple[str, int | None]]
                                       ) -> dict[str, tuple[int, dict]]:
        """`alert_checkpoint` of many `(vehicle, before_ms)` at once (one query), by vehicle;
        vehicles without one left out."""
    async def alerts_in_windows(self, asks: Sequence[tuple[str, int | None]]
                                ) -> dict[str, list[StoredAlert]]:
        """`alerts_in_window` of many `(vehicle, after_ms)` at once (one query), by vehicle;
        vehicles without any left out."""
    async def save_alerts_many(self, saves: Sequence[tuple[list, list[tuple], tuple | None,
                                                           Sequence]],
                               now_ms: int) -> list[list[tuple[StoredAlert, bool]]]:
        """`save_alerts` of many `(upserts, retract, checkpoints, moves)` in one transaction:
        what each changed, in order."""
    async def save_alert_checkpoints(self, points: list[tuple[str, int, dict]]) -> None:
        """Checkpoints of many vehicles, (vehicle, time_ms, state) each, in one transaction."""
    async def prune_alert_checkpoints(self, before_ms: int) -> int:
        """Drop checkpoints older than `before_ms`, except each vehicle's newest."""
    async def list_alerts(self, query: AlertQuery) -> list[StoredAlert]: ...
    async def alert(self, alert_id: int) -> StoredAlert | None: ...
    async def ack_alert(self, alert_id: int, user: str, now_ms: int) -> StoredAlert | None:
        """Acknowledge once (a second ack keeps the first's user and time)."""
    async def alerts_after(self, after_id: int, limit: int) -> list[StoredAlert]:
        """Alerts with id > after_id in id order (the order they were first stored), at most
        `limit`: how notifications read new alerts by cursor."""


class Driving(Protocol):
    """A vehicle's driving folded per UTC day (driving.py; backend/driving/fold.py)."""

    async def driving_day(self, vehicle_id: str, day_ms: int) -> tuple[str, str, str] | None:
        """(signature, fingerprint, result JSON) of the stored day, None if never folded."""
    async def put_driving_day(self, vehicle_id: str, day_ms: int, signature: str,
                              fingerprint: str, result: str, folded_ms: int) -> None:
        """Store (or replace) the day's fold."""


class Service(Protocol):
    """Vehicle service records (service.py; docs/maintenance.md)."""

    async def add_service(self, vehicle_id: str, interval: str, done_ms: int,
                          odometer_km: float | None, engine_h: float | None, note: str = "",
                          recorded_by: str = "", cost: float | None = None) -> int: ...
    async def last_services(self, vehicle_id: str) -> dict[str, dict]:
        """The newest service per interval name."""
    async def list_services(self, vehicle_id: str, limit: int) -> list[dict]:
        """The vehicle's services, newest first: id, vehicle_id, interval, done_ms,
        odometer_km, engine_h, note, cost, recorded_by."""


class Dispatch(Protocol):
    """Catalogues, jobs, routes and their transitions (dispatch.py; docs/dispatch.md)."""

    async def put_catalogue(self, item, now_ms: int) -> bool:
        """Create or replace a vehicle type, driver or depot; True if it was created."""
    async def catalogue(self, kind: str) -> list: ...
    async def delete_catalogue(self, kind: str, item_id: str) -> bool: ...
    async def put_dispatch_vehicle(self, v: FleetVehicle, now_ms: int) -> None: ...
    async def dispatch_vehicles(self) -> list[FleetVehicle]: ...
    async def add_jobs(self, jobs: list[Job], now_ms: int) -> list[str]:
        """Store new jobs in one transaction (a repeated import changes nothing)."""
    async def replace_job(self, job: Job, now_ms: int,
                          states: tuple[JobState, ...]) -> JobRecord | None: ...
    async def job(self, job_id: str) -> JobRecord | None: ...
    async def jobs(self, q: JobQuery) -> list[JobRecord]: ...
    async def record_transitions(self, ts: list[Transition]) -> list[Transition]:
        """Record transitions in order, in one transaction; ids recorded before are skipped."""
    async def transitions(self, job_id: str) -> list[Transition]: ...
    async def transitions_after(self, after_seq: int, limit: int) -> list[tuple[int, Transition]]:
        """(seq, transition) of every job with seq > after_seq, in seq order, at most `limit`:
        how consumers (notifications, tracking links) read job events by cursor."""
    async def put_dispatch_route(self, route: Route, base_version: int | None, now_ms: int,
                                 transitions: Sequence[Transition] = ()) -> Route: ...
    async def dispatch_route(self, route_id: str) -> Route | None: ...
    async def dispatch_routes(self, statuses: tuple[str, ...] = (),
                              vehicle_id: str | None = None) -> list[Route]: ...


class Notify(Protocol):
    """Notifications (notify.py; docs/notifications.md): subscriptions, the outbox and its
    delivery log, the event sources' cursors, the leases of once-per-cluster work."""

    async def add_subscription(self, owner: str, group: str | None, body: dict, secret: str,
                               now_ms: int) -> int: ...
    async def subscriptions(self, owner: str | None = None) -> list[dict]:
        """id, owner, group, body, secret, created_ms of each (only `owner`'s if given)."""
    async def subscription(self, sub_id: int) -> dict | None: ...
    async def delete_subscription(self, sub_id: int) -> bool:
        """Delete it with its outbox and delivery log."""
    async def notify_cursor(self, name: str) -> int:
        """How far the event source `name` was read (0: not yet)."""
    async def enqueue_notifications(self, rows: Sequence[tuple[int, str, dict, int]],
                                    now_ms: int, cursor: tuple[str, int] | None = None) -> int:
        """In one transaction: add (subscription id, event id, event, due ms) rows to the
        outbox (a (subscription, event id) there already, or a deleted subscription, adds
        nothing) and move the cursor `(name, position)` forward. How many were added."""
    async def due_notifications(self, now_ms: int, limit: int) -> list[dict]:
        """Pending outbox rows due at `now_ms`, oldest due first: id, subscription_id,
        event_id, event, attempts, next_ms."""
    async def finish_notifications(self, outcomes: Sequence[tuple[int, bool, str, int | None]],
                                   now_ms: int) -> None:
        """Per (outbox id, ok, detail, retry at ms): log the attempt; ok → delivered, else
        retry at that time, or (None) give up (a dispatch mail's payload is then emptied:
        it holds a link's token). A row no longer pending is left alone."""
    async def outbox_has(self, event_id: str) -> bool:
        """Is an outbox row of this event id there (any subscription, any state)?"""
    async def delivery_log(self, sub_id: int, limit: int) -> list[dict]:
        """The subscription's attempts, newest first, with their event's id and state."""
    async def take_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew the lease `name` until now + ttl; False while another holds it."""
    async def release_lease(self, name: str, holder: str) -> None: ...


class Proposals(Protocol):
    """Dispatch proposals waiting for approval (proposals.py; docs/planning.md)."""

    async def put_proposal(self, p: StoredProposal, keep_open: int = ...) -> list[str]:
        """Keep a new open proposal; returns the ids of older open ones it dropped."""
    async def proposal(self, proposal_id: str) -> StoredProposal | None: ...
    async def proposals(self, status: str | None = None,
                        limit: int = ...) -> list[StoredProposal]: ...
    async def close_proposal(self, proposal_id: str, status: str, by: str,
                             now_ms: int) -> bool:
        """Open → approved or dropped; False when it was not open."""


class Driver(Protocol):
    """Who drives which vehicle when, driver actions, messages and proof-of-delivery images
    (driver.py; docs/driver.md)."""

    async def driver_of(self, vehicle_id: str, at_ms: int) -> str | None:
        """Who drives `vehicle_id` at `at_ms` (the driver id of its route's shift)."""
    async def driver_shift(self, driver_id: str, at_ms: int) -> Route | None:
        """The route of the driver's shift at `at_ms` (what the driver app shows)."""
    async def driver_action(self, key: str) -> dict | None: ...
    async def device_last_seq(self, device_id: str) -> int | None: ...
    async def add_driver_action(self, row: dict, transitions: Sequence[Transition] = (),
                                message: dict | None = None) -> tuple[dict, bool]:
        """An action with its transitions and message, in one transaction (once per key)."""
    async def driver_actions(self, driver_id: str | None = None, job_id: str | None = None,
                             conflicts: bool = False, vehicles: frozenset[str] | None = None,
                             after: int = 0, limit: int = ...) -> list[dict]: ...
    async def add_driver_message(self, message: dict) -> tuple[dict, bool]: ...
    async def driver_message(self, message_id: str) -> dict | None: ...
    async def driver_messages(self, driver_id: str | None = None,
                              vehicle_id: str | None = None, after: int = 0,
                              limit: int = ...) -> list[dict]: ...
    async def put_driver_file(self, f: dict) -> bool: ...
    async def driver_file(self, file_id: str) -> dict | None: ...
    async def driver_file_count(self, driver_id: str, job_id: str) -> int: ...
    async def driver_files_exist(self, file_ids: Sequence[str], driver_id: str) -> set[str]: ...


class Links(Protocol):
    """Tracking links, inbound webhook sources and idempotency keys (links.py;
    docs/customers.md)."""

    async def add_link(self, link: TrackingLink, max_live: int) -> bool:
        """Store a new link unless its job has `max_live` unrevoked ones (False)."""
    async def link_by_hash(self, token_hash: str) -> TrackingLink | None: ...
    async def link(self, link_id: str) -> TrackingLink | None: ...
    async def job_links(self, job_id: str) -> list[TrackingLink]: ...
    async def revoke_link(self, link_id: str, now_ms: int) -> TrackingLink | None: ...
    async def put_inbound_source(self, source_id: str, secret: str, now_ms: int,
                                 by: str) -> bool: ...
    async def inbound_secret(self, source_id: str) -> str | None: ...
    async def inbound_sources(self) -> list[dict]: ...
    async def delete_inbound_source(self, source_id: str) -> bool: ...
    async def claim_request(self, source: str, key: str, request_hash: str, now_ms: int,
                            stale_ms: int) -> ClaimResult:
        """Take an idempotency key for a request, or say how it was used before."""
    async def finish_request(self, source: str, key: str, status: int,
                             response: str) -> None: ...
    async def drop_request(self, source: str, key: str) -> None: ...
    async def purge_requests(self, before_ms: int) -> int: ...
    async def done_jobs(self, from_ms: int, to_ms: int, limit: int) -> list[tuple]:
        """Jobs in a final state whose last change lies in the window, with their
        transitions (the export)."""


class ImageParts(Protocol):
    """Images being assembled from a vehicle's journal (image_parts.py, docs/protocol.md §4
    "Images"): rows of PART_COLUMNS."""

    async def image_parts(self, vehicle_id: str, image_id: str) -> list[dict]: ...
    async def open_images(self, vehicle_id: str) -> dict[str, int]: ...
    async def put_image_part(self, part: dict) -> bool: ...
    async def drop_image_parts(self, vehicle_id: str, image_id: str) -> int: ...
    async def drop_stale_image_parts(self, before_ms: int) -> int:
        """Forget the images whose last part came before `before_ms`; the parts dropped."""


class ActionLetters(Protocol):
    """Vehicle actions the backend could not apply (action_letters.py, docs/operations.md
    "Dead letters of vehicle actions"): rows of LETTER_COLUMNS, one per `act` reading."""

    async def action_letter(self, vehicle_id: str, epoch: int, seq: int) -> dict | None: ...
    async def put_action_letter(self, row: dict) -> None: ...
    async def drop_action_letter(self, vehicle_id: str, epoch: int, seq: int) -> bool: ...
    async def action_letters(self, state: str | None = None, vehicle_id: str | None = None,
                             limit: int = ...) -> list[dict]: ...


class Partitions(Protocol):
    """Partition upkeep (partitions.py)."""

    async def maintain(self, now_ms: int | None = None) -> dict:
        """Create partitions ahead and drop those past retention; a no-op where not needed.
        {"created": count, "dropped": [names]}."""


class Replication(Protocol):
    """PostgreSQL only, and optional: callers ask `hasattr(store, "replication")` first."""

    async def replication(self) -> dict:
        """The server's replication state: primary or not, standbys, synchronous ones."""


class Owners(Protocol):
    """One owner process per vehicle for its clock-driven state (owners.py; docs/scaling.md
    §4 "Who owns a vehicle"): the cluster's members and each vehicle's owner."""

    async def renew_member(self, node: str, now_ms: int, ttl_ms: int) -> None:
        """`node` is a live member until now + ttl."""
    async def leave_member(self, node: str, now_ms: int) -> None:
        """`node` stops (its vehicles are adopted at the others' next sync)."""
    async def record_connections(self, node: str,
                                 changes: Sequence[tuple[str, bool, int]]) -> None:
        """(vehicle, connected, at_ms) in order: a connection claims the vehicle for `node`
        unless a newer connection elsewhere holds it; a disconnection marks it disconnected
        where `node` still owns it."""
    async def owned_vehicles(self, node: str, now_ms: int) -> dict[str, tuple[bool, int]]:
        """Adopt every vehicle whose owner is no live member and those never owned, then
        `node`'s vehicles: (connected, since_ms: connected at, or last connected)."""
    async def save_owned_alerts(self, node: str, changes: Sequence,
                                now_ms: int) -> list[tuple[StoredAlert, bool]]:
        """`save_alerts` of the changes whose vehicle `node` owns, checked in the same
        transaction (a vehicle handed over meanwhile is left to its new owner)."""


class Store(Db, Vehicles, Readings, History, Geofences, Commands, Accounts, Alerts, Service,
            Dispatch, Driver, Proposals, Links, Notify, Partitions, Driving, ImageParts,
            ActionLetters, Owners, Protocol):
    """Everything a store does: what `open_store` returns."""
