"""One plain e-mail address (pure): what a notification's target, a report's recipient and a
job's customer contact must be — no display name, no comment, no quoted local part, nothing a
mail header could be bent with."""

from __future__ import annotations

import re

# A mailbox as SMTP carries it (RFC 5321 limits: 64 local, 255 domain).
MAX_EMAIL = 254
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
                    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def is_plain_email(address) -> bool:
    return (isinstance(address, str) and len(address) <= MAX_EMAIL
            and _EMAIL.match(address) is not None)
