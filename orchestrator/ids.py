"""Identifiers that sort in creation order (48-bit milliseconds + 80 random bits)."""

from __future__ import annotations

import secrets
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


_last = (0, 0)


def new_id(prefix: str, now: datetime) -> str:
    """A new id; ids made by this process sort in the order they were made,
    within one millisecond too (the random part then counts up)."""
    global _last
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    last_millis, last_rand = _last
    if millis <= last_millis and last_rand < (1 << 80) - (1 << 17):
        millis, rand = last_millis, last_rand + 1 + secrets.randbits(16)
    else:
        rand = secrets.randbits(79)
    _last = (millis, rand)
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"
