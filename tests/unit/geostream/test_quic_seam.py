"""The QUIC seam (geostream/quic/) is the only place a QUIC library is imported: every other
module of the repository reaches aioquic or qh3 through `geostream.quic.library()`."""

import ast
import logging
import subprocess
from pathlib import Path

import pytest

from geostream.quic import (
    AGENT_DEFAULT_LIBRARY,
    DEFAULT_LIBRARY,
    LIBRARIES,
    gateway_library_name,
    library,
    library_name,
)

REPO = Path(__file__).resolve().parents[3]
QUIC_PACKAGES = ("aioquic", "qh3")
# the adapters: the one module per library allowed to import it
ADAPTERS = {"geostream/quic/aioquic_lib.py", "geostream/quic/qh3_lib.py"}


def quic_imports(source: str) -> list[str]:
    """The QUIC library modules `source` imports (import statements, `__import__` and
    `importlib.import_module` with a literal name)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                  "import_module", "__import__")):
            names = [node.args[0].value]
        found += [n for n in names if n.split(".")[0] in QUIC_PACKAGES]
    return found


def test_the_scanner_finds_every_form_of_import():
    source = ("import aioquic.tls\nfrom qh3.quic.connection import QuicConnection\n"
              "import importlib\nimportlib.import_module('qh3.asyncio')\n__import__('aioquic')\n"
              "def f():\n    from aioquic.buffer import Buffer\n"
              "import aioquicish\nfrom .aioquic import x\n")
    assert quic_imports(source) == ["aioquic.tls", "qh3.quic.connection", "qh3.asyncio",
                                    "aioquic", "aioquic.buffer"]


def test_no_module_outside_the_seam_imports_a_quic_library():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                            "*.py"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    assert "geostream/quic/__init__.py" in files
    offenders = {f: quic_imports((REPO / f).read_text()) for f in files if f not in ADAPTERS}
    assert {f: names for f, names in offenders.items() if names} == {}
    for adapter in ADAPTERS:  # and each adapter imports only its own library
        own = Path(adapter).stem.removesuffix("_lib")
        assert {n.split(".")[0] for n in quic_imports((REPO / adapter).read_text())} == {own}


def test_library_names(monkeypatch):
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert library_name() == DEFAULT_LIBRARY == "aioquic"  # tools, test clients
    assert library_name(default=AGENT_DEFAULT_LIBRARY) == "qh3"  # the agent's
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", "qh3")
    assert library_name() == "qh3" and library().NAME == "qh3"
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", "aioquic")  # the environment beats a default
    assert library_name(default=AGENT_DEFAULT_LIBRARY) == "aioquic"
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", "qh3")
    assert library("aioquic").NAME == "aioquic"  # explicit beats the environment
    with pytest.raises(ValueError, match="unknown QUIC library"):
        library_name("quiche")


def test_the_gateways_library_follows_its_role(monkeypatch):
    """qh3 for a single gateway process and relaying --reuseport workers, aioquic where CIDs
    are routed by server id without a relay (the router); a name (or $FLEET_QUIC_LIBRARY)
    wins, except qh3 where CIDs are routed without a relay: refused, saying why."""
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert gateway_library_name() == "qh3"
    assert gateway_library_name(cid_routed=True) == "aioquic"
    assert gateway_library_name(cid_routed=True, relayed=True) == "qh3"
    assert gateway_library_name("aioquic", cid_routed=True, relayed=True) == "aioquic"
    assert gateway_library_name("aioquic") == "aioquic"
    assert gateway_library_name("aioquic", cid_routed=True) == "aioquic"
    with pytest.raises(ValueError, match="connection IDs are routed.*not routable"):
        gateway_library_name("qh3", cid_routed=True)
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", "aioquic")  # tests and benches pick one
    assert gateway_library_name() == "aioquic"
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", "qh3")
    assert gateway_library_name("aioquic") == "aioquic"
    with pytest.raises(ValueError, match="not routable"):
        gateway_library_name(cid_routed=True)


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_every_adapter_has_the_seams_names(name):
    lib = library(name)
    for attr in ("QuicConfiguration", "QuicConnection", "QuicConnectionProtocol", "QuicServer",
                 "serve", "connect", "QuicEvent", "HandshakeCompleted", "StreamDataReceived",
                 "ConnectionTerminated", "PingAcknowledged", "ConnectionIdIssued",
                 "SessionTicket", "CipherSuite", "destination_cid", "ack_with_data",
                 "advertise_max_ack_delay", "delay_acks_up_to", "floor_probe_timeout", "ack_delays",
                 "issue_routable_cids",
                 "host_cids", "ROUTABLE_NEW_CIDS", "smoothed_rtt", "recovery_counts",
                 "peer_address", "peer_certificate_der", "ticket_time",
                 "trim_new_connection", "trim_after_handshake", "batch_receiver"):
        assert hasattr(lib, attr), f"{name} lacks {attr}"


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_sending_on_a_connection_the_peer_closed_is_dropped(name, pki):
    """The agent sends whenever a batch is ready, also between the peer's CONNECTION_CLOSE and
    the ConnectionTerminated event it reads next: both adapters drop the data (qh3's facade
    raised, which stopped the agent when a backend shut down gracefully)."""
    import ssl

    lib = library(name)
    scfg = lib.QuicConfiguration(is_client=False, alpn_protocols=["c"])
    scfg.load_cert_chain(pki["cert"], pki["key"])
    ccfg = lib.QuicConfiguration(is_client=True, alpn_protocols=["c"], server_name="localhost",
                                 verify_mode=ssl.CERT_REQUIRED)
    ccfg.load_verify_locations(cafile=pki["ca"])
    client = lib.QuicConnection(configuration=ccfg)
    client.connect(("127.0.0.1", 4433), now=1.0)
    out = client.datagrams_to_send(now=1.0)
    server = lib.QuicConnection(configuration=scfg, original_destination_connection_id=(
        lib.destination_cid(out[0][0], 8)))
    now = 1.0
    for _ in range(10):  # bounded: the handshake takes two or three flights
        for data, _ in out:
            server.receive_datagram(data, ("127.0.0.1", 50000), now=now)
        back = server.datagrams_to_send(now=now)
        for data, _ in back:
            client.receive_datagram(data, ("127.0.0.1", 4433), now=now)
        out = client.datagrams_to_send(now=now)
        now += 0.01
        if not out and not back:
            break
    events = []
    while (event := client.next_event()) is not None:
        events.append(type(event).__name__)
    assert "HandshakeCompleted" in events
    server.close(error_code=0, reason_phrase="shutting down")
    for data, _ in server.datagrams_to_send(now=now):
        client.receive_datagram(data, ("127.0.0.1", 4433), now=now)
    client.send_stream_data(0, b"a batch")  # must not raise
    client.send_ping(1)
    client.datagrams_to_send(now=now)
    client.handle_timer(now=now + 10)
    events = []
    while (event := client.next_event()) is not None:
        events.append(type(event).__name__)
    assert "ConnectionTerminated" in events


def test_a_peer_close_is_not_logged_as_a_warning(caplog):
    library("qh3")  # its adapter quiets the one message
    quic_log = logging.getLogger("quic")
    with caplog.at_level(logging.WARNING, logger="quic"):
        quic_log.warning("Native peer close: %r", ("peer_closed", True, 0, None, b""))
        quic_log.warning("Native protocol error: %r", ("protocol_error", 10, 0, "x"))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["Native protocol error"]


def test_qh3_max_ack_delay_is_rewritten_in_the_encoded_parameters():
    """`advertise_max_ack_delay` on qh3 edits the one transport parameter in the encoded
    extension (RFC 9000 §18: id, length, value, all varints): in place, appended when absent,
    every other byte as it was; a truncated extension is refused."""
    rewrite = library("qh3").with_max_ack_delay
    idle = bytes([0x01, 0x04, 0x80, 0x03, 0xA9, 0x80])  # max_idle_timeout 240,000 ms
    ack_25 = bytes([0x0B, 0x01, 0x19])  # max_ack_delay 25 ms
    cid = bytes([0x0F, 0x02, 0xAB, 0xCD])  # initial_source_connection_id
    ack_400 = bytes([0x0B, 0x02, 0x41, 0x90])  # 400 ms, a two-byte varint
    assert rewrite(idle + ack_25 + cid, 400) == idle + ack_400 + cid
    assert rewrite(idle + cid, 400) == idle + cid + ack_400
    assert rewrite(b"", 25) == ack_25
    with pytest.raises(ValueError):
        rewrite(idle + bytes([0x0F, 0x05, 0xAB]), 400)
