"""Customer satisfaction surveys: the signed link a requester gets when their ticket is solved,
and the rating scale. Pure.

A link carries its own proof: ``<payload>.<signature>``, both base64url, where the payload is
the workspace, the survey id and the expiry (Unix seconds) and the signature is HMAC-SHA256 of
the payload with the service's CSAT secret. A forged or altered link is refused before any
database is read; the expiry is inside what is signed, so it cannot be stretched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from crm_ticketing.domain.errors import FieldError, InvalidFields, TicketingError

# Ratings are 1 (very unsatisfied) to 5 (very satisfied); 4 and 5 count as "good".
MIN_RATING = 1
MAX_RATING = 5
GOOD_FROM = 4
MAX_COMMENT = 2000
# How long a survey link can be answered.
SURVEY_TTL = timedelta(days=14)
_VERSION = "c1"


@dataclass(frozen=True)
class SurveyClaim:
    """What a valid link names."""

    workspace_id: str
    survey_id: UUID
    expires_at: datetime


class SurveyState(StrEnum):
    PENDING = "pending"  # sent, not answered yet
    RATED = "rated"
    EXPIRED = "expired"
    # The ticket was reopened and solved again: a newer survey replaced this one.
    SUPERSEDED = "superseded"


class SurveyClosed(TicketingError):
    """The link was valid but can no longer be answered (410): rated, expired or superseded."""

    def __init__(self, state: SurveyState) -> None:
        super().__init__(f"this survey can no longer be answered: {state.value}")
        self.state = state


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()


def sign_token(secret: str, claim: SurveyClaim) -> str:
    expires = int(claim.expires_at.timestamp())
    payload = _b64(f"{_VERSION}\n{claim.workspace_id}\n{claim.survey_id}\n{expires}".encode())
    return f"{payload}.{_b64(_signature(secret, payload))}"


def verify_token(secret: str, token: str) -> SurveyClaim | None:
    """The claim of a link this service signed with ``secret``; None for anything else
    (malformed, forged, altered). Expiry is not checked here: see :func:`state_of`."""
    payload, _, signature = token.partition(".")
    if not payload or not signature or len(token) > 512:
        return None
    try:
        given = _unb64(signature)
        fields = _unb64(payload).decode().split("\n")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given, _signature(secret, payload)):
        return None
    if len(fields) != 4 or fields[0] != _VERSION:
        return None
    try:
        return SurveyClaim(fields[1], UUID(fields[2]), datetime.fromtimestamp(int(fields[3]), UTC))
    except (ValueError, OverflowError):
        return None


def state_of(expires_at: datetime, rated_at: datetime | None, superseded_at: datetime | None,
             now: datetime) -> SurveyState:
    """Rated wins over the rest (an answer stays an answer), then superseded, then expired."""
    if rated_at is not None:
        return SurveyState.RATED
    if superseded_at is not None:
        return SurveyState.SUPERSEDED
    if now >= expires_at:
        return SurveyState.EXPIRED
    return SurveyState.PENDING


@dataclass(frozen=True)
class Answer:
    rating: int
    comment: str | None


def parse_answer(raw: object) -> Answer:
    """``{"rating": 1-5, "comment": optional, at most 2000 characters}``; InvalidFields names
    every bad or unknown field."""
    if not isinstance(raw, dict):
        raise InvalidFields([FieldError("body", "a JSON object")])
    errors = [FieldError(str(k), "unknown field") for k in raw if k not in ("rating", "comment")]
    rating = raw.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not MIN_RATING <= rating <= MAX_RATING:
        errors.append(FieldError("rating", f"an integer from {MIN_RATING} to {MAX_RATING}"))
    comment = raw.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            errors.append(FieldError("comment", "a string"))
        elif len(comment) > MAX_COMMENT:
            errors.append(FieldError("comment", f"at most {MAX_COMMENT} characters"))
        else:
            comment = comment.strip() or None
    if errors:
        raise InvalidFields(errors)
    assert isinstance(rating, int)
    return Answer(rating, comment if isinstance(comment, str) else None)


def survey_text(subject: str, link: str) -> str:
    """The message the requester gets."""
    about = f' about "{subject}"' if subject else ""
    return (f"Your request{about} has been solved. How did we do? Rate us from 1 to 5 here:\n\n{link}\n\n"
            f"The link works once and for {SURVEY_TTL.days} days.")
