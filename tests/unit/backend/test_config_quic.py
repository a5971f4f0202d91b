"""The gateway's QUIC library is configuration (geostream/quic/, docs/link.md)."""

import pytest

from backend.config import BackendConfig

NODE = dict(server_id=1, router="127.0.0.1:7000", cluster_key_file="cluster.key")


def test_the_library_is_a_setting_checked_at_start(monkeypatch):
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert BackendConfig(quic_library="qh3").quic_library == "qh3"
    with pytest.raises(ValueError, match="unknown QUIC library 'quiche'"):
        BackendConfig(quic_library="quiche")


def test_a_node_behind_the_router_takes_either_library(monkeypatch):
    """qh3 issues random CIDs in NEW_CONNECTION_ID: a node announces them to the router, which
    routes them to it (backend/cluster/edge.py RouterAnnouncer), so qh3 is allowed there."""
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert BackendConfig(**NODE, quic_library="qh3").gateway_quic_library() == "qh3"
    assert BackendConfig(**NODE, quic_library="aioquic").gateway_quic_library() == "aioquic"


def test_the_default_follows_the_role(monkeypatch):
    """qh3 everywhere unless the setting names one: a single gateway process, --reuseport
    workers (which relay the CIDs qh3 draws without the server id) and a node behind the
    router (which announces them to the router)."""
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    assert BackendConfig().gateway_quic_library() == "qh3"
    assert BackendConfig(quic_library="aioquic").gateway_quic_library() == "aioquic"
    assert BackendConfig(**NODE).gateway_quic_library() == "qh3"
    workers = BackendConfig(reuseport=2, db="postgresql://fleet@db/fleet",
                            nats_url="nats://127.0.0.1:4222")
    assert workers.gateway_quic_library() == "qh3"
