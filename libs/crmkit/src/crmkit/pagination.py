"""Opaque keyset cursors: the sort values of the last row a page ended on.

A cursor is base64url JSON, so any service can page on any sort key; a cursor that was not
handed out (or belongs to another sort) fails to decode and the caller gets a 422.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


class InvalidCursor(ValueError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this API gave out")


def encode_cursor(kind: str, values: list[Any]) -> str:
    raw = json.dumps([kind, *values], separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, arity: int) -> list[Any]:
    """The values ``encode_cursor(kind, values)`` put in, or InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(decoded, list) or len(decoded) != arity + 1 or decoded[0] != kind:
        raise InvalidCursor()
    return decoded[1:]
