from functools import reduce
from pathlib import Path

import pytest

CORPUS = Path(__file__).parents[3] / "data" / "nmea"


def with_checksum(body: str) -> bytes:
    """`GPGGA,...` -> b"$GPGGA,...*hh\\r\\n" (computed independently of agent code)."""
    check = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{check:02X}\r\n".encode()


@pytest.fixture
def nmea():
    return with_checksum


@pytest.fixture
def corpus():
    return CORPUS
