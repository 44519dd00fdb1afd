"""Webhook signatures, following Standard Webhooks (https://www.standardwebhooks.com).

Every request carries three headers:

- ``webhook-id``: the message id. It stays the same across the retries of one delivery (the
  partner deduplicates on it); a replay is a new message, ``<event id>.r<replay id>``, so a
  partner that deduplicates still processes what it asked to see again. The CloudEvent ``id``
  in the body is always the event's own id.
- ``webhook-timestamp``: unix seconds when this attempt was signed.
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` under the
  secret's bytes (the base64 after ``whsec_``), one per valid secret, separated by spaces:
  during a rotation both the old and the new secret sign, so a partner verifying with either
  accepts the request.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from crm_partners.domain.accounts import SECRET_PREFIX

VERSION = "v1"
# How far a request's timestamp may be from the receiver's clock (replay protection).
TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """A request that no given secret signed, or signed too long ago."""


def message_id(event_id: str, replay_id: object | None = None) -> str:
    """The ``webhook-id`` of a delivery: the event id, or a replay's own id for it."""
    return event_id if replay_id is None else f"{event_id}.r{replay_id}"


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret (the prefix is optional, as in the spec)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def signature_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret that is valid now."""
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: int,
           tolerance: int = TOLERANCE_SECONDS) -> None:
    """What a receiver does: accept the request when any ``v1`` signature in the header was
    made with one of its secrets over this id, timestamp and body, and the timestamp is
    within ``tolerance`` seconds of ``now``. Raises InvalidSignature otherwise.

    ``headers`` must look names up in lower case (HTTP libraries' header maps do)."""
    try:
        msg_id = headers["webhook-id"]
        raw_timestamp = headers["webhook-timestamp"]
        header = headers["webhook-signature"]
    except KeyError as exc:
        raise InvalidSignature(f"missing header {exc.args[0]}") from exc
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise InvalidSignature("webhook-timestamp is not unix seconds") from exc
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("webhook-timestamp is too far from now")
    offered = [part.partition(",")[2] for part in header.split() if part.startswith(f"{VERSION},")]
    for secret in secrets:
        expected = sign(secret, msg_id, timestamp, body).partition(",")[2]
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise InvalidSignature("no valid signature")
