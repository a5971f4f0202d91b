"""fleet-agent backend: QUIC gateway, persistence and live hub (`python -m backend`)."""

__version__ = "0.1.0"
