"""The QUIC library behind one seam: every use of aioquic or qh3 goes through here.

`library(name)` is the adapter module of one library; each has the same names:

- the public API: `QuicConfiguration`, `QuicConnection`, `QuicConnectionProtocol`,
  `QuicServer`, `serve`, `connect`, the events (`QuicEvent`, `HandshakeCompleted`,
  `StreamDataReceived`, `ConnectionTerminated`, `PingAcknowledged`, `ConnectionIdIssued`,
  `ConnectionIdRetired`),
  `SessionTicket`, `CipherSuite`, `destination_cid(datagram, cid_length)`;
- the hooks the libraries do not offer publicly, one function each: ACKs riding with data
  (`ack_with_data`, `advertise_max_ack_delay`, `delay_acks_up_to`, `ack_delays`), routable
  connection IDs (`issue_routable_cids`, `host_cids`, `ROUTABLE_NEW_CIDS`), `smoothed_rtt`,
  `recovery_counts`, a client's rejected 0-RTT sent again at once (`resend_rejected_early_data`),
  `peer_address`, `peer_certificate_der`, `ticket_time`, a gateway's memory trims
  (`trim_new_connection`, `trim_after_handshake`) and its socket's batch read
  (`batch_receiver`: None where the library has none).

Which library a process uses is configuration (the backend's `quic_library`, the agent's
`[server] quic_library`), else $FLEET_QUIC_LIBRARY, else the side's default:
`gateway_library_name` (the gateway: qh3, also where CIDs are routed, since those roles
route the CIDs it draws without the server id),
`AGENT_DEFAULT_LIBRARY` (the agent) or `DEFAULT_LIBRARY` (tools, test clients; docs/link.md
says why). Both can
be loaded in one process (the protocol-level tests run against each).
tests/unit/geostream/test_quic_seam.py fails if any other module imports a QUIC library.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

# name → the adapter module that alone imports it
LIBRARIES = {"aioquic": "geostream.quic.aioquic_lib", "qh3": "geostream.quic.qh3_lib"}
# tools and test clients (a library of the process, not a side's choice)
DEFAULT_LIBRARY = "aioquic"
# qh3 keeps every must on the agent and saves ~9 MB of its RSS (docs/link.md, QUIC library)
AGENT_DEFAULT_LIBRARY = "qh3"
LIBRARY_ENV = "FLEET_QUIC_LIBRARY"
# a single gateway process: qh3 keeps every must there and costs 0.56-0.91x aioquic's CPU per
# reading (docs/link.md, QUIC library; docs/benchmarks.md)
GATEWAY_DEFAULT_LIBRARY = "qh3"
# a gateway whose connection IDs something routes by server id without knowing the CIDs
# drawn without it: only aioquic puts the server id into every CID it issues
CID_ROUTED_LIBRARY = "aioquic"
# `--reuseport` workers and nodes behind the router, which route a CID without the server id
# to its owner too (backend/cluster/relay.py: relayed between workers, announced to the
# router): qh3, the cheaper per reading there too (docs/scaling.md §4)
RELAYED_DEFAULT_LIBRARY = "qh3"

_protocol_classes: dict[tuple[str, type], type] = {}


def library_name(name: str | None = None, default: str = DEFAULT_LIBRARY) -> str:
    """`name`, else $FLEET_QUIC_LIBRARY, else `default`; ValueError for an unknown one."""
    chosen = name or os.environ.get(LIBRARY_ENV) or default
    if chosen not in LIBRARIES:
        raise ValueError(f"unknown QUIC library {chosen!r} (one of {', '.join(LIBRARIES)})")
    return chosen


def gateway_library_name(name: str | None = None, cid_routed: bool = False,
                         relayed: bool = False) -> str:
    """The gateway's QUIC library, chosen here alone: `name` (its `quic_library`), else
    $FLEET_QUIC_LIBRARY, else the role's default: `GATEWAY_DEFAULT_LIBRARY` (qh3, the cheaper
    per reading) for a single gateway process, `CID_ROUTED_LIBRARY` (aioquic) where
    `cid_routed`: the router or the kernel's SO_REUSEPORT steering sends each datagram to the
    process whose server id its destination CID carries. qh3 2.1.0's core draws the CIDs of
    NEW_CONNECTION_ID itself, at random (no hook), so a vehicle that migrates onto one would
    reach another process: a library without routable CIDs is refused there (ValueError),
    whoever named it, unless the processes are `relayed` (`--reuseport` workers hand such a
    CID's datagrams to its owner, a node announces it to the router: backend/cluster/relay.py),
    whose default is `RELAYED_DEFAULT_LIBRARY`. A single process routes every CID by its own
    map and keeps every must on either library."""
    default = GATEWAY_DEFAULT_LIBRARY
    if cid_routed:
        default = RELAYED_DEFAULT_LIBRARY if relayed else CID_ROUTED_LIBRARY
    chosen = library_name(name, default)
    if cid_routed and not relayed and not library(chosen).ROUTABLE_NEW_CIDS:
        raise ValueError(
            f"quic_library {chosen} cannot serve where connection IDs are routed without a "
            f"relay (a node behind the router): it issues connection IDs that are not "
            f"routable (without the server id), so a vehicle that migrates onto one reaches "
            f"another node; use aioquic there (docs/link.md, QUIC library)")
    return chosen


def library(name: str | None = None, default: str = DEFAULT_LIBRARY) -> ModuleType:
    """The adapter of QUIC library `name` (see `library_name`), imported on first use."""
    return importlib.import_module(LIBRARIES[library_name(name, default)])


def protocol_class(lib: ModuleType, mixin: type) -> type:
    """`mixin` on top of `lib`'s `QuicConnectionProtocol`, one class per pair (a gateway
    connection is the same code on either library)."""
    key = (lib.NAME, mixin)
    cls = _protocol_classes.get(key)
    if cls is None:
        cls = _protocol_classes[key] = type(
            mixin.__name__, (mixin, lib.QuicConnectionProtocol),
            {"__module__": mixin.__module__, "__qualname__": mixin.__qualname__})
    return cls
