"""Readings for alert tests, built by hand."""

from backend.store.base import StoredReading

V = "truck-1"
EPOCH = 7


def pos(seq: int, t_s: float, speed: float, lat: float = 53.55, lon: float = 9.99,
        vehicle: str = V) -> StoredReading:
    return StoredReading(vehicle, EPOCH, seq, round(t_s * 1000), "pos", lat=lat, lon=lon,
                         speed_kmh=speed, received_ms=1)


def can(seq: int, t_s: float, vehicle: str = V, **signals) -> StoredReading:
    return StoredReading(vehicle, EPOCH, seq, round(t_s * 1000), "can", data=signals,
                         received_ms=1)


def evt(seq: int, t_s: float, name: str, vehicle: str = V, **data) -> StoredReading:
    return StoredReading(vehicle, EPOCH, seq, round(t_s * 1000), "evt",
                         data={"name": name, **data}, received_ms=1)
