"""fleet-agent: the on-vehicle daemon (GPS/CAN sources → SQLite journal → geostream over QUIC)."""

__version__ = "0.1.0"
