"""Signatures of the inbound-parse email webhook. Pure.

A sender signs ``"<timestamp>.<body>"`` (the Unix time in seconds as ASCII digits, a dot, the
raw body bytes) with HMAC-SHA256 and the source's secret, and sends

    X-Crm-Timestamp: <timestamp>
    X-Crm-Signature: v1=<hex digest>

The header may carry several comma-separated signatures (a sender rotating its secret signs
with both); one valid ``v1`` is enough. A timestamp more than ``TOLERANCE_SECONDS`` away from
the receiver's clock is refused, so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from enum import Enum

TIMESTAMP_HEADER = "X-Crm-Timestamp"
SIGNATURE_HEADER = "X-Crm-Signature"
VERSION = "v1"
TOLERANCE_SECONDS = 300
# A header longer than this is not a list of a few signatures; it is not even parsed.
_MAX_HEADER_CHARS = 1024


class Verdict(Enum):
    VALID = "valid"
    MISSING = "missing"  # no timestamp or no signature header
    STALE = "stale"  # the timestamp is not a number, or too far from now
    FORGED = "forged"  # no signature matches


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Crm-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"{VERSION}={_digest(secret, str(timestamp).encode(), body)}"


def signed_headers(secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """Both headers a sender adds to a request carrying ``body``, signed now."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secrets: Sequence[bytes], body: bytes, timestamp: str | None, signature: str | None,
           now: float, tolerance: int = TOLERANCE_SECONDS) -> Verdict:
    """Whether the headers sign ``body`` with one of ``secrets`` (the current one and, while a
    sender rotates, the previous one), at a time within ``tolerance`` seconds of ``now``.
    Every candidate is compared in constant time."""
    if not timestamp or not signature:
        return Verdict.MISSING
    stamp = timestamp.strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return Verdict.STALE
    if abs(now - int(stamp)) > tolerance:
        return Verdict.STALE
    if len(signature) > _MAX_HEADER_CHARS:
        return Verdict.FORGED
    given = [value.strip().encode() for version, _, value in
             (part.strip().partition("=") for part in signature.split(","))
             if version == VERSION]
    expected = [_digest(secret, stamp.encode(), body).encode() for secret in secrets]
    valid = False
    for candidate in given:
        for digest in expected:
            valid |= hmac.compare_digest(candidate.lower(), digest)
    return Verdict.VALID if valid else Verdict.FORGED


def _digest(secret: bytes, timestamp: bytes, body: bytes) -> str:
    mac = hmac.new(secret, timestamp, hashlib.sha256)
    mac.update(b".")
    mac.update(body)
    return mac.hexdigest()
