"""Build CAN sources from the agent TOML's `[can]` table (keys: docs/can.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import ConfigError
from .dbcload import DbcError, load_dbc_checked, resolve_dbc
from .decoder import CanDecoder, is_j1939
from .j1939text import DI_MESSAGE, DI_SIGNALS
from .obd import FUNCTIONAL_ID, ObdConfig, ObdPoller
from .select import Rule, Selector
from .source import CanBusSource, CanPipeline, ReplaySource

BUS_KEYS = {
    "name", "interface", "channel", "dbc", "signals", "j1939", "snapshot_hz",
    "snapshot_max_age_ms", "min_interval_ms", "deadband", "max_interval_ms", "replay", "speed",
    "loop", "timestamps", "options", "bitrate", "kernel_filters", "replay_channel",
    "range_check", "dm1", "obd",
}
log = logging.getLogger("fleet_agent.can")
SIGNAL_KEYS = {"name", "min_interval_ms", "deadband", "max_interval_ms"}
OBD_KEYS = {"pids", "interval_ms", "dtc_interval_s", "request_id"}
CAN_KEYS = {"bus", "snapshot_hz"}


def _num(table: dict, key: str, where: str, default, kind=(int, float), minimum=0):
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} must be a number")
    if value < minimum:
        raise ConfigError(f"{where}: {key!r} must be >= {minimum}")
    return value


def _rule(table: dict, where: str, default: Rule) -> Rule:
    return Rule(
        min_interval_ms=_num(table, "min_interval_ms", where, default.min_interval_ms),
        deadband=_num(table, "deadband", where, default.deadband),
        max_interval_ms=_num(table, "max_interval_ms", where, default.max_interval_ms),
    )


def _selection(signals: list, databases: list, where: str, default: Rule):
    """[names or tables] → (decoder selection {message: {signal: key}}, rules {key: Rule})."""
    by_signal: dict[str, list[str]] = {}
    messages = {}
    for db in databases:
        for message in db.messages:
            messages.setdefault(message.name, message)
    for message in messages.values():
        for sig in message.signals:
            by_signal.setdefault(sig.name, []).append(message.name)
    if any(is_j1939(m) for m in messages.values()):  # the decoder's own DI (j1939text.py)
        for name in DI_SIGNALS:
            by_signal.setdefault(name, []).append(DI_MESSAGE)
    selection: dict[str, dict[str, str]] = {}
    rules: dict[str, Rule] = {}
    for i, item in enumerate(signals):
        here = f"{where} signals[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{here}: must be a signal name or a table with 'name'")
        unknown = set(item) - SIGNAL_KEYS
        if unknown:
            raise ConfigError(f"{here}: unknown key(s) {', '.join(sorted(unknown))}")
        key = item["name"]
        msg_name, dot, sig_name = key.rpartition(".")
        if dot:
            message = messages.get(msg_name)
            if msg_name == DI_MESSAGE and DI_MESSAGE in by_signal.get(sig_name, []):
                pass
            elif message is None or all(s.name != sig_name for s in message.signals):
                raise ConfigError(f"{here}: no signal {key!r} in this bus's DBC files")
        else:
            sig_name = key
            owners = by_signal.get(key, [])
            if not owners:
                raise ConfigError(f"{here}: no signal {key!r} in this bus's DBC files")
            if len(owners) > 1:
                choices = ", ".join(f"{m}.{key}" for m in owners)
                raise ConfigError(f"{here}: {key!r} is in several messages; write one of {choices}")
            msg_name = owners[0]
        if key in rules:
            raise ConfigError(f"{here}: {key!r} listed twice")
        selection.setdefault(msg_name, {})[sig_name] = key
        rules[key] = _rule(item, here, default)
    return selection, rules


def _obd(table, where: str) -> ObdConfig | None:
    """`[can.bus.obd]` → ObdConfig (None when absent)."""
    if table is None:
        return None
    where = f"{where} obd"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ([[can.bus]] ... [can.bus.obd])")
    unknown = set(table) - OBD_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    default = _num(table, "interval_ms", where, 1000, kind=int, minimum=100)
    pids = []
    for i, item in enumerate(table.get("pids", [])):
        if isinstance(item, int) and not isinstance(item, bool):
            item = {"pid": item}
        if not isinstance(item, dict) or set(item) - {"pid", "interval_ms"}:
            raise ConfigError(f"{where} pids[{i}]: a PID number or {{pid, interval_ms}}")
        pid = item.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int) or not 1 <= pid <= 0xFF:
            raise ConfigError(f"{where} pids[{i}]: 'pid' must be 1..255")
        pids.append((pid, _num(item, "interval_ms", f"{where} pids[{i}]", default, kind=int,
                               minimum=100)))
    dtc_s = _num(table, "dtc_interval_s", where, 60)
    request_id = table.get("request_id", FUNCTIONAL_ID)
    if isinstance(request_id, bool) or request_id not in (FUNCTIONAL_ID, *range(0x7E0, 0x7E8)):
        raise ConfigError(f"{where}: 'request_id' must be 0x7DF or 0x7E0..0x7E7")
    if not pids and not dtc_s:
        raise ConfigError(f"{where}: nothing to poll (no 'pids', dtc_interval_s = 0)")
    return ObdConfig(tuple(pids), round(dtc_s * 1000), request_id)


def make_bus_source(bus: dict, where: str, base_dir: Path, can_section: dict):
    unknown = set(bus) - BUS_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = bus.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: missing key 'name'")
    interface = bus.get("interface", "socketcan")
    if not isinstance(interface, str):
        raise ConfigError(f"{where}: 'interface' must be a string")
    dbc_names = bus.get("dbc")
    if isinstance(dbc_names, str):
        dbc_names = [dbc_names]
    if not dbc_names or not all(isinstance(d, str) for d in dbc_names):
        raise ConfigError(f"{where}: 'dbc' must list at least one DBC file")
    databases, warnings = [], []
    for dbc in dbc_names:
        path = resolve_dbc(dbc, base_dir)
        try:
            db, found = load_dbc_checked(path)
        except DbcError as exc:
            raise ConfigError(f"{where} dbc: cannot load DBC {exc}") from None
        databases.append(db)
        warnings += found
    for warning in warnings:
        log.warning("%s: DBC %s (loaded as cantools' non-strict mode does)", where, warning)
    default = _rule(bus, where, Rule())
    signals = bus.get("signals")
    if signals is None:
        selection, rules = None, {}
    elif isinstance(signals, list) and signals:
        selection, rules = _selection(signals, databases, where, default)
    else:
        raise ConfigError(f"{where}: 'signals' must be a non-empty list (leave it out for all)")
    j1939 = bus.get("j1939", "auto")
    if j1939 not in ("auto", True, False):
        raise ConfigError(f"{where}: 'j1939' must be true, false or \"auto\"")
    range_check = bus.get("range_check", "keep")
    if range_check not in ("keep", "drop"):
        raise ConfigError(f"{where}: 'range_check' must be \"keep\" or \"drop\"")
    dm1 = bus.get("dm1", "auto")
    if dm1 not in ("auto", True, False):
        raise ConfigError(f"{where}: 'dm1' must be true, false or \"auto\"")
    j1939_bus = j1939 is True or (j1939 == "auto" and any(
        is_j1939(m) for db in databases for m in db.messages))
    if dm1 == "auto":
        dm1 = j1939_bus
    decoder = CanDecoder(databases, selection, None if j1939 == "auto" else j1939,
                         range_check=range_check, dm1=dm1, di=j1939_bus)
    decoder.counts["dbc_warnings"] = len(warnings)
    snapshot_hz = _num(bus, "snapshot_hz", where, can_section.get("snapshot_hz", 0))
    selector = Selector(
        rules, default, snapshot_hz=snapshot_hz or 0,
        snapshot_max_age_ms=_num(bus, "snapshot_max_age_ms", where, 5000),
    )
    obd = _obd(bus.get("obd"), where)
    poller = ObdPoller(obd, 0) if obd is not None else None
    pipeline = CanPipeline(name, decoder, selector, poller)
    source_name = f"can:{name}"
    if interface == "replay":
        if obd is not None:
            raise ConfigError(f"{where}: 'obd' polling needs a live bus, not a replay")
        replay = bus.get("replay")
        if not isinstance(replay, str) or not replay:
            raise ConfigError(f"{where}: interface \"replay\" needs 'replay' = log file")
        path = Path(replay) if Path(replay).is_absolute() else base_dir / replay
        if not path.exists():
            raise ConfigError(f"{where}: replay file {str(path)!r} not found")
        timestamps = bus.get("timestamps", "log")
        if timestamps not in ("log", "now"):
            raise ConfigError(f"{where}: 'timestamps' must be \"log\" or \"now\"")
        loop = bus.get("loop", False)
        if not isinstance(loop, bool):
            raise ConfigError(f"{where}: 'loop' must be true or false")
        return ReplaySource(
            source_name, pipeline, path,
            speed=_num(bus, "speed", where, 1.0),
            loop=loop,
            timestamps=timestamps,
            channel=bus.get("replay_channel"),
        )
    channel = bus.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise ConfigError(f"{where}: 'channel' must be a string")
    if channel is None and interface in ("socketcan", "slcan"):
        raise ConfigError(f"{where}: interface {interface!r} needs 'channel'")
    options = bus.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: 'options' must be a table")
    kwargs = dict(options)
    if "bitrate" in bus:
        kwargs["bitrate"] = _num(bus, "bitrate", where, None, kind=int, minimum=1)
    kernel_filters = bus.get("kernel_filters")
    if kernel_filters is not None and not isinstance(kernel_filters, bool):
        raise ConfigError(f"{where}: 'kernel_filters' must be true or false")
    return CanBusSource(source_name, pipeline, interface, channel, kwargs, kernel_filters)


def make_sources(section: dict, where: str, base_dir: Path) -> list:
    """`[can]` → sources; [] when empty. Raises ConfigError naming file and key."""
    if not section:
        return []
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [can] must be a table")
    unknown = set(section) - CAN_KEYS
    if unknown:
        raise ConfigError(f"{where} [can]: unknown key(s) {', '.join(sorted(unknown))}")
    _num(section, "snapshot_hz", f"{where} [can]", 0)
    buses = section.get("bus", [])
    if not isinstance(buses, list) or not all(isinstance(b, dict) for b in buses):
        raise ConfigError(f"{where} [can]: 'bus' must be an array of tables ([[can.bus]])")
    sources = []
    names = set()
    for i, bus in enumerate(buses):
        label = bus.get("name") if isinstance(bus.get("name"), str) else i
        here = f"{where} [[can.bus]] {label!r}" if label != i else f"{where} [[can.bus]] #{i + 1}"
        source = make_bus_source(bus, here, Path(base_dir), section)
        if source.pipeline.bus in names:
            raise ConfigError(f"{here}: bus name used twice")
        names.add(source.pipeline.bus)
        sources.append(source)
    return sources
