"""The gateway's QUIC library is configuration (geostream/quic/, docs/link.md)."""

import pytest

from backend.config import BackendConfig

NODE = dict(server_id=1, router="127.0.0.1:7000", cluster_key_file="cluster.key")


def test_the_library_is_a_setting_checked_at_start(monkeypatch):
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert BackendConfig(quic_library="qh3").quic_library == "qh3"
    with pytest.raises(ValueError, match="unknown QUIC library 'quiche'"):
        BackendConfig(quic_library="quiche")


def test_a_node_behind_the_router_refuses_qh3(monkeypatch):
    """qh3 issues a random CID in NEW_CONNECTION_ID: behind a router a migrated vehicle would
    land on a random node. Also when qh3 comes from the environment."""
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert BackendConfig(**NODE).server_id == 1
    with pytest.raises(ValueError, match="routable"):
        BackendConfig(**NODE, quic_library="qh3")
    monkeypatch.setenv("FLEET_QUIC_LIBRARY", "qh3")
    with pytest.raises(ValueError, match="routable"):
        BackendConfig(**NODE)
    assert BackendConfig(**NODE, quic_library="aioquic").quic_library == "aioquic"


def test_the_default_follows_the_role(monkeypatch):
    """A single gateway process and --reuseport workers (which relay the CIDs qh3 draws
    without the server id) run qh3, a node behind the router aioquic (its CIDs are routed by
    server id), unless the setting names one."""
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert BackendConfig().gateway_quic_library() == "qh3"
    assert BackendConfig(quic_library="aioquic").gateway_quic_library() == "aioquic"
    assert BackendConfig(**NODE).gateway_quic_library() == "aioquic"
    workers = BackendConfig(reuseport=2, db="postgresql://fleet@db/fleet",
                            nats_url="nats://127.0.0.1:4222")
    assert workers.gateway_quic_library() == "qh3"
