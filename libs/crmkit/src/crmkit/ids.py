"""Identifiers: UUIDv7 for new records, name-based UUIDs for ids derived from provider data."""

from __future__ import annotations

import os
import time
import uuid

# Fixed namespace for ids derived from outside data (RFC 9562 name-based, SHA-1).
_NAMESPACE = uuid.UUID("5b0c3a5e-7d1f-4c36-9a53-0f2d8e6b1c42")


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48-bit milliseconds, then random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def derived_id(*parts: str) -> uuid.UUID:
    """The same parts always give the same id: replaying a provider message changes nothing."""
    return uuid.uuid5(_NAMESPACE, "\x1f".join(parts))
