"""Protocol error codes (docs/protocol.md §3, table of `error` codes)."""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    UNKNOWN_TYPE = 3
    TOO_LARGE = 4
    AUTH_FAILED = 5
    REVOKED = 6
    FORBIDDEN = 7
    UNEXPECTED = 8
    OVERLOADED = 9
    INTERNAL = 10
    INVALID_READING = 11

    @property
    def fatal(self) -> bool:
        return self not in _NON_FATAL

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


_NON_FATAL = {ErrorCode.UNKNOWN_TYPE, ErrorCode.OVERLOADED, ErrorCode.INVALID_READING}


class ProtocolError(Exception):
    """The peer broke the protocol; `code` says how (and whether the session can go on)."""

    def __init__(self, code: ErrorCode, reason: str):
        super().__init__(f"{code.label}: {reason}")
        self.code = code
        self.reason = reason
