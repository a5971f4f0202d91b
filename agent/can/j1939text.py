"""Sans-IO J1939 text parameter groups a DBC cannot describe: Driver's Identification.

DI (PGN 65131, 0xFE6B, SAE J1939-71) is variable length: "Driver 1 identification" (SPN 1625)
and "Driver 2 identification" (SPN 1626), each ASCII ending in a '*' delimiter; longer than 8
bytes it comes by the transport protocol (BAM), which the decoder reassembles. A tachograph
sends the card numbers of the drivers in the cab. The fields become the string signals
`Driver1Identification` and `Driver2Identification` (geostream/signalnames.py), absent when
empty; anything that is not printable ASCII, or longer than MAX_ID_CHARS, is dropped rather
than recorded (what the bus sends is untrusted until checked).
"""

from __future__ import annotations

PGN_DI = 0xFE6B
DI_MESSAGE = "DI"
DI_SIGNALS = ("Driver1Identification", "Driver2Identification")
DELIMITER = ord("*")
# A driver card number is 16 characters (EU tachograph); room for other schemes, no more: a
# longer field is noise, not an id.
MAX_ID_CHARS = 32


def parse_di(data: bytes) -> dict[str, str]:
    """{signal: id} of a DI payload (single frame or reassembled); padding (0xFF) and
    spaces around an id ignored."""
    out: dict[str, str] = {}
    fields = bytes(data).split(bytes([DELIMITER]))
    # the fields before a delimiter; a last piece without one is padding or a torn field
    for name, raw in zip(DI_SIGNALS, fields[:-1], strict=False):
        raw = raw.rstrip(b"\xff\x00")
        if not raw or len(raw) > MAX_ID_CHARS + 8 or any(b < 0x20 or b > 0x7E for b in raw):
            continue
        text = raw.decode("ascii").strip()
        if text and len(text) <= MAX_ID_CHARS:
            out[name] = text
    return out


def encode_di(driver1: str, driver2: str = "") -> bytes:
    """A DI payload (for simulators and tests): the two ids with their delimiters, padded
    with 0xFF to at least 8 bytes."""
    data = f"{driver1}*{driver2}*".encode("ascii")
    return data + b"\xff" * max(0, 8 - len(data))
