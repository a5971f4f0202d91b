"""The QUIC library behind one seam: every use of aioquic or qh3 goes through here.

`library(name)` is the adapter module of one library; each has the same names:

- the public API: `QuicConfiguration`, `QuicConnection`, `QuicConnectionProtocol`,
  `QuicServer`, `serve`, `connect`, the events (`QuicEvent`, `HandshakeCompleted`,
  `StreamDataReceived`, `ConnectionTerminated`, `PingAcknowledged`, `ConnectionIdIssued`),
  `SessionTicket`, `CipherSuite`, `destination_cid(datagram, cid_length)`;
- the hooks the libraries do not offer publicly, one function each: ACKs riding with data
  (`ack_with_data`, `advertise_max_ack_delay`, `delay_acks_up_to`, `ack_delays`), routable
  connection IDs (`issue_routable_cids`, `host_cids`, `ROUTABLE_NEW_CIDS`), `smoothed_rtt`,
  `peer_address`, `peer_certificate_der`, `ticket_time`, and a gateway's memory trims
  (`trim_new_connection`, `trim_after_handshake`).

Which library a process uses is configuration (the backend's `quic_library`, the agent's
`[server] quic_library`), else $FLEET_QUIC_LIBRARY, else the side's default: `DEFAULT_LIBRARY`
(the gateway, tools) or `AGENT_DEFAULT_LIBRARY` (the agent; docs/link.md says why). Both can
be loaded in one process (the protocol-level tests run against each).
tests/unit/geostream/test_quic_seam.py fails if any other module imports a QUIC library.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

# name → the adapter module that alone imports it
LIBRARIES = {"aioquic": "geostream.quic.aioquic_lib", "qh3": "geostream.quic.qh3_lib"}
DEFAULT_LIBRARY = "aioquic"
# qh3 keeps every must on the agent and saves ~9 MB of its RSS (docs/link.md, QUIC library)
AGENT_DEFAULT_LIBRARY = "qh3"
LIBRARY_ENV = "FLEET_QUIC_LIBRARY"

_protocol_classes: dict[tuple[str, type], type] = {}


def library_name(name: str | None = None, default: str = DEFAULT_LIBRARY) -> str:
    """`name`, else $FLEET_QUIC_LIBRARY, else `default`; ValueError for an unknown one."""
    chosen = name or os.environ.get(LIBRARY_ENV) or default
    if chosen not in LIBRARIES:
        raise ValueError(f"unknown QUIC library {chosen!r} (one of {', '.join(LIBRARIES)})")
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
