"""Sans-IO line framing: raw serial bytes in, candidate NMEA lines out.

Receivers interleave binary protocols (u-blox UBX, RTCM3 corrections) with NMEA on one port,
and cables drop bytes. This module finds `$...` lines, skips binary frames whole when their
own checksum proves them real, and treats every other byte as noise, counting what it drops.
"""

from __future__ import annotations

import re
from collections import Counter

# NMEA 0183 caps a sentence at 82 characters; multi-constellation receivers exceed it with
# extra fields (NMEA 4.11 GSA/GNS), so allow slack before calling a line over-long.
MAX_LINE = 120
# Largest UBX payload we wait for before deciding; RXM-RAWX with 64 signals is ~2 KB.
MAX_UBX_PAYLOAD = 2048
# RTCM3 frames carry a 10-bit length, so 1023 bytes is the protocol maximum.
MAX_RTCM_PAYLOAD = 1023

# In the lines `feed` returns: a sentence was here but is lost (cut or over-long), so the
# epoch it belonged to is incomplete (docs/gps.md).
LOST = b""
_START = re.compile(rb"[$\xb5\xd3]")
# A sentence body: printable ASCII except '$' (a '$' means the previous line was cut).
_BODY = re.compile(rb"[\x20-\x23\x25-\x7e]*")
# A complete checksummed sentence; one inside a claimed binary frame proves the frame fake.
_SENTENCE = re.compile(rb"\$([\x20-\x23\x25-\x29\x2b-\x7e]{1,%d})\*([0-9A-F]{2})\r?\n"
                       % MAX_LINE)


def _crc24q_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return table


_CRC24Q = _crc24q_table()


def crc24q(data: bytes) -> int:
    """CRC-24Q as used by RTCM3 frames."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24Q[(crc >> 16) ^ byte]
    return crc


def nmea_checksum(body: bytes) -> int:
    """XOR of all bytes, folded as one big integer (far faster than a Python loop)."""
    x, n = int.from_bytes(body, "little"), len(body)
    while n > 1:
        half = (n + 1) // 2
        x = (x & ((1 << (8 * half)) - 1)) ^ (x >> (8 * half))
        n = half
    return x


def ubx_checksum(data: bytes) -> bytes:
    """The 8-bit Fletcher checksum over a UBX frame's class, id, length and payload."""
    a = b = 0
    for byte in data:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


class LineAssembler:
    """Feed bytes, get complete candidate lines (without CR/LF, starting with b"$").

    Counters (in the shared `counts`): `overlong`, `truncated` (a line cut by another '$' or a
    binary byte), `ubx_frames`, `rtcm_frames`, `noise_bytes`.
    """

    def __init__(self, counts: Counter[str] | None = None) -> None:
        self._buf = bytearray()
        self.counts: Counter[str] = counts if counts is not None else Counter()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        buf = self._buf
        out: list[bytes] = []
        pos, end = 0, len(buf)
        noise = 0
        while pos < end:
            m = _START.search(buf, pos)
            if m is None:
                noise += _count_noise(buf, pos, end)
                pos = end
                break
            start = m.start()
            noise += _count_noise(buf, pos, start)
            lead = buf[start]
            if lead == 0x24:  # '$'
                body_end = _BODY.match(buf, start + 1).end()
                if body_end - start > MAX_LINE:
                    self.counts["overlong"] += 1
                    out.append(LOST)
                    pos = body_end
                    continue
                if body_end == end:
                    pos = start  # incomplete: wait for more bytes
                    break
                term = buf[body_end]
                if term in (0x0D, 0x0A):
                    out.append(bytes(buf[start:body_end]))
                else:
                    self.counts["truncated"] += 1
                    out.append(LOST)
                pos = body_end
            else:
                skip = self._binary(buf, start, end, lead)
                if skip is None:
                    pos = start  # incomplete frame: wait
                    break
                if skip == 1:
                    noise += 1
                pos = start + skip
        if noise:
            self.counts["noise_bytes"] += noise
        del buf[:pos]
        return out

    def flush(self) -> None:
        """End of input: whatever is buffered is a cut line or a cut frame."""
        if self._buf:
            if self._buf[0] == 0x24:
                self.counts["truncated"] += 1
            else:
                self.counts["noise_bytes"] += len(self._buf)
            self._buf.clear()

    def _binary(self, buf: bytearray, start: int, end: int, lead: int) -> int | None:
        """Bytes to skip at a UBX/RTCM candidate: frame length if valid, 1 if not,
        None if more bytes are needed to decide."""
        skip = self._frame(buf, start, end, lead)
        if skip is None and _has_sentence(buf, start + 1, end):
            return 1  # random bytes looked like a frame header: do not hold NMEA behind it
        return skip

    def _frame(self, buf: bytearray, start: int, end: int, lead: int) -> int | None:
        avail = end - start
        if lead == 0xB5:
            if avail < 6:
                return None if avail < 2 or buf[start + 1] == 0x62 else 1
            if buf[start + 1] != 0x62:
                return 1
            length = buf[start + 4] | (buf[start + 5] << 8)
            if length > MAX_UBX_PAYLOAD:
                return 1
            total = 6 + length + 2
            if avail < total:
                return None
            frame = buf[start : start + total]
            if ubx_checksum(frame[2:-2]) != frame[-2:]:
                return 1
            self.counts["ubx_frames"] += 1
            return total
        # RTCM3: 0xD3, 6 reserved zero bits, 10-bit length, payload, CRC-24Q
        if avail < 3:
            return None if avail < 2 or buf[start + 1] & 0xFC == 0 else 1
        if buf[start + 1] & 0xFC:
            return 1
        length = ((buf[start + 1] & 0x03) << 8) | buf[start + 2]
        total = 3 + length + 3
        if avail < total:
            return None
        frame = buf[start : start + total]
        if crc24q(frame[:-3]) != int.from_bytes(frame[-3:], "big"):
            return 1
        self.counts["rtcm_frames"] += 1
        return total


def _count_noise(buf: bytearray, start: int, stop: int) -> int:
    """Bytes between lines that are not line terminators are noise."""
    if stop <= start:
        return 0
    return stop - start - buf.count(b"\r", start, stop) - buf.count(b"\n", start, stop)


def _has_sentence(buf: bytearray, start: int, stop: int) -> bool:
    """Is there a complete NMEA sentence with a correct checksum in buf[start:stop]?"""
    for m in _SENTENCE.finditer(buf, start, stop):
        if nmea_checksum(m[1]) == int(m[2], 16):
            return True
    return False
