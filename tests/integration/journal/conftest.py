"""Helpers for the journal tests: readings, and a raw look at a journal file."""

from __future__ import annotations

import sqlite3

import pytest

from agent.readings import Event, Position, Signals

T0 = 1_750_000_000_000  # a fixed device time (ms) so tests never depend on the clock


def pos(ts_ms: int, lat: float = 59.3, lon: float = 18.0) -> Position:
    return Position(ts_ms=ts_ms, lat=lat, lon=lon, speed_kmh=42.0, course_deg=90.0, sats=9)


def sig(ts_ms: int, rpm: int = 1500) -> Signals:
    return Signals(ts_ms=ts_ms, bus="can0", values={"rpm": rpm, "coolant_c": 88})


def evt(ts_ms: int, name: str = "test") -> Event:
    return Event(ts_ms, name, {})


def raw_seqs(path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT seq FROM readings ORDER BY seq")]
    finally:
        db.close()


def integrity(path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def jpath(tmp_path):
    return str(tmp_path / "journal.sqlite")
