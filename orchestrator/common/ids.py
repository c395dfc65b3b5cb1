"""Identifiers that sort in creation order (48-bit milliseconds + 80 random bits)."""

from __future__ import annotations

import os
import random
from datetime import datetime

# Crockford base32, lower case (sortable as text), two digits (10 bits) at a time:
# a table lookup per pair is a few times faster than base64.b32encode, and ids are
# made on the callback path.
_DIGITS = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]

# Ids need to be unique, not secret (tokens are signed, not ids): a generator seeded
# from the OS, seeded again in a forked child so that no two processes share a sequence.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))

_last = (0, 0)


def _encode(millis: int, rand: int) -> str:
    """26 Crockford digits of the 130-bit number millis << 80 | rand."""
    n = (millis << 80) | rand
    p = _PAIRS
    # Written out rather than joined from a loop: a third less time, once per callback.
    return (
        p[n >> 120 & 1023]
        + p[n >> 110 & 1023]
        + p[n >> 100 & 1023]
        + p[n >> 90 & 1023]
        + p[n >> 80 & 1023]
        + p[n >> 70 & 1023]
        + p[n >> 60 & 1023]
        + p[n >> 50 & 1023]
        + p[n >> 40 & 1023]
        + p[n >> 30 & 1023]
        + p[n >> 20 & 1023]
        + p[n >> 10 & 1023]
        + p[n & 1023]
    )


def new_id(prefix: str, now: datetime) -> str:
    """A new id; ids made by this process sort in the order they were made,
    within one millisecond too (the random part then counts up)."""
    global _last
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    last_millis, last_rand = _last
    if millis <= last_millis and last_rand < (1 << 80) - (1 << 17):
        millis, rand = last_millis, last_rand + 1 + _random.getrandbits(16)
    else:
        rand = _random.getrandbits(79)
    _last = (millis, rand)
    return f"{prefix}_{_encode(millis, rand)}"
