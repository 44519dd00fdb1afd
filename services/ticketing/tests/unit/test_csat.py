"""CSAT's pure rules: signed links, the survey's state, the answer's checks, the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import SecretStr, ValidationError

from crm_ticketing.domain.csat import (
    SurveyClaim,
    SurveyState,
    parse_answer,
    sign_token,
    state_of,
    verify_token,
)
from crm_ticketing.domain.errors import InvalidFields
from crm_ticketing.domain.model import Ticket, TicketStatus
from crm_ticketing.service.csat import solved_now
from crm_ticketing.service.hooks import TicketChange
from crm_ticketing.settings import Settings
from crmkit.settings import InfraSettings

SECRET = "k" * 40
CLAIM = SurveyClaim("ws-1", UUID("0190d2a0-0000-7000-8000-000000000001"),
                    datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


def test_a_signed_link_verifies_to_its_claim() -> None:
    assert verify_token(SECRET, sign_token(SECRET, CLAIM)) == CLAIM


@pytest.mark.parametrize("token", ["", "abc", "a.b", ".", "x" * 600, "!!!.???"])
def test_garbage_is_refused(token: str) -> None:
    assert verify_token(SECRET, token) is None


def test_another_secret_or_any_changed_character_is_refused() -> None:
    token = sign_token(SECRET, CLAIM)
    assert verify_token("o" * 40, token) is None
    payload, signature = token.split(".")
    for i in range(len(payload)):
        flipped = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:]
        assert verify_token(SECRET, f"{flipped}.{signature}") is None
    assert verify_token(SECRET, f"{payload}.{signature[:-2]}AA") is None


def test_the_expiry_and_workspace_are_signed() -> None:
    """A link re-made with a later expiry or another workspace, keeping the signature, fails."""
    _, signature = sign_token(SECRET, CLAIM).split(".")
    for other in (SurveyClaim(CLAIM.workspace_id, CLAIM.survey_id, CLAIM.expires_at + timedelta(days=30)),
                  SurveyClaim("ws-2", CLAIM.survey_id, CLAIM.expires_at)):
        payload, _ = sign_token("x" * 40, other).split(".")
        assert verify_token(SECRET, f"{payload}.{signature}") is None


def test_state_rated_wins_then_superseded_then_expired() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    later, earlier = now + timedelta(days=1), now - timedelta(seconds=1)
    assert state_of(later, None, None, now) is SurveyState.PENDING
    assert state_of(now, None, None, now) is SurveyState.EXPIRED
    assert state_of(later, None, earlier, now) is SurveyState.SUPERSEDED
    assert state_of(earlier, earlier, earlier, now) is SurveyState.RATED


def test_an_answer_is_1_to_5_with_an_optional_comment() -> None:
    assert parse_answer({"rating": 5}).rating == 5
    answer = parse_answer({"rating": 1, "comment": "  slow  "})
    assert (answer.rating, answer.comment) == (1, "slow")
    assert parse_answer({"rating": 3, "comment": "   "}).comment is None


@pytest.mark.parametrize(("body", "fields"), [
    ({}, ["rating"]),
    ({"rating": 0}, ["rating"]),
    ({"rating": 6}, ["rating"]),
    ({"rating": True}, ["rating"]),
    ({"rating": "good"}, ["rating"]),
    ({"rating": 4.5}, ["rating"]),
    ({"rating": 4, "comment": "x" * 2001}, ["comment"]),
    ({"rating": 4, "comment": 7}, ["comment"]),
    ({"rating": 9, "stars": 2}, ["stars", "rating"]),
])
def test_a_bad_answer_names_every_bad_field(body: dict[str, object], fields: list[str]) -> None:
    with pytest.raises(InvalidFields) as caught:
        parse_answer(body)
    assert [e.field for e in caught.value.errors] == fields


def _ticket(status: TicketStatus) -> Ticket:
    return Ticket(id=CLAIM.survey_id, workspace_id="ws-1", contact_id=CLAIM.survey_id, channel="email",
                  subject="Help", status=status, message_count=1, created_at=CLAIM.expires_at)


def test_a_survey_is_sent_only_when_the_status_moves_to_solved() -> None:
    solved, opened = _ticket(TicketStatus.SOLVED), _ticket(TicketStatus.OPEN)
    assert solved_now(opened, solved, TicketChange(actor="a", fields=("status",)))
    assert not solved_now(solved, solved, TicketChange(actor="a", fields=("tags",)))
    assert not solved_now(solved, _ticket(TicketStatus.CLOSED), TicketChange(actor="a", fields=("status",)))
    assert not solved_now(opened, opened, TicketChange(actor="a", fields=("status",)))


def test_the_secret_is_required_in_prod_strong_when_given_and_defaulted_in_dev() -> None:
    def infra(environment: str) -> InfraSettings:
        return InfraSettings(jwt_secret=SecretStr("j" * 40), environment=environment)  # type: ignore[arg-type]

    with pytest.raises(ValidationError, match="TICKETING_CSAT_SECRET"):
        Settings(infra=infra("prod"))
    with pytest.raises(ValidationError, match="TICKETING_CSAT_SECRET"):
        Settings(infra=infra("prod"), csat_secret=SecretStr("short"))
    assert Settings(infra=infra("prod"), csat_secret=SecretStr(SECRET)).csat_signing_key == SECRET
    assert len(Settings(infra=infra("test")).csat_signing_key) >= 32
