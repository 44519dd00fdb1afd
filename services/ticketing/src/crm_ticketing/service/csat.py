"""CSAT: a survey sent when a ticket is solved, answered once through a signed public link.

:class:`CsatSurveys` is a :class:`TicketHook`: in the transaction of the change that solves a
ticket, it supersedes the ticket's unanswered surveys, records a new one and asks ingest to
send its link to the requester (crm.outbound.v1) beside ``csat.requested``, so a survey exists
exactly when its message is on its way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from crm.ticketing.v1 import events_pb2
from crm_ticketing.domain import events
from crm_ticketing.domain.csat import (
    SURVEY_TTL,
    SurveyClaim,
    SurveyClosed,
    SurveyState,
    parse_answer,
    sign_token,
    state_of,
    survey_text,
    verify_token,
)
from crm_ticketing.domain.errors import NotFound
from crm_ticketing.domain.model import Ticket, TicketStatus
from crm_ticketing.service.hooks import TicketChange
from crm_ticketing.store.csat import CsatStore, Survey
from crm_ticketing.store.tickets import TicketsStore
from crm_ticketing.wire import outbound_to_requester
from crmkit.ids import uuid7
from crmkit.kafka import Event, make_event
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.topics import TICKETS

log = logging.getLogger(__name__)
MAX_SURVEYS_LISTED = 50


def csat_requested(survey: Survey) -> Event:
    payload = events_pb2.CsatRequested(
        survey_id=str(survey.id), workspace_id=survey.workspace_id, ticket_id=str(survey.ticket_id),
        contact_id=str(survey.contact_id), channel=survey.channel, agent=survey.agent or "",
        team_id=str(survey.team_id or ""))
    payload.created_at.FromDatetime(survey.created_at)
    payload.expires_at.FromDatetime(survey.expires_at)
    return make_event(topic=TICKETS, type=events.CSAT_REQUESTED, source=events.SOURCE,
                      workspace=survey.workspace_id, subject=str(survey.contact_id), payload=payload)


def csat_rated(survey: Survey) -> Event:
    payload = events_pb2.CsatRated(
        survey_id=str(survey.id), workspace_id=survey.workspace_id, ticket_id=str(survey.ticket_id),
        contact_id=str(survey.contact_id), channel=survey.channel, agent=survey.agent or "",
        team_id=str(survey.team_id or ""), rating=survey.rating or 0, comment=survey.comment or "")
    if survey.rated_at is not None:
        payload.rated_at.FromDatetime(survey.rated_at)
    return make_event(topic=TICKETS, type=events.CSAT_RATED, source=events.SOURCE,
                      workspace=survey.workspace_id, subject=str(survey.contact_id), payload=payload)


def solved_now(before: Ticket | None, after: Ticket, change: TicketChange) -> bool:
    """The change moved the ticket to solved (not: it was solved and something else changed)."""
    return ("status" in change.fields and after.status is TicketStatus.SOLVED
            and (before is None or before.status is not TicketStatus.SOLVED))


class CsatSurveys:
    """The hook that sends surveys, and the use cases of the public link and of agents."""

    def __init__(self, db: PgDatabase, secret: str, public_base_url: str) -> None:
        self.db = db
        self.secret = secret
        self.public_base_url = public_base_url.rstrip("/")

    def link(self, survey: Survey) -> str:
        token = sign_token(self.secret, SurveyClaim(survey.workspace_id, survey.id, survey.expires_at))
        return f"{self.public_base_url}/v1/public/csat/{token}"

    async def after_change(self, uow: PgUnitOfWork, before: Ticket | None, after: Ticket,
                           change: TicketChange) -> None:
        if not solved_now(before, after, change):
            return
        if not after.requester:
            # Nobody to ask: a ticket threaded before requesters were recorded.
            log.info("no CSAT survey: the ticket has no requester", extra={"ticket": str(after.id)})
            return
        store = CsatStore(uow.conn)
        now = datetime.now(UTC)
        await store.supersede_open(after.workspace_id, after.id, now)
        # The assignee is credited; an unassigned ticket credits whoever replied last.
        agent = after.assignee or await store.last_replier(after.workspace_id, after.id)
        # Whole seconds: the link carries the expiry in seconds, and both must agree.
        expires = datetime.fromtimestamp(int((now + SURVEY_TTL).timestamp()), UTC)
        survey = Survey(id=uuid7(), workspace_id=after.workspace_id, ticket_id=after.id,
                        contact_id=after.contact_id, channel=after.channel, agent=agent,
                        team_id=after.team_id,
                        created_at=now, expires_at=expires)
        await store.insert(survey)
        text = survey_text(after.subject, self.link(survey))
        uow.add(outbound_to_requester(after, f"csat:{survey.id}", text,
                                      subject=f"How did we do? {after.subject}".strip(),
                                      reference=f"csat:{survey.id}"))
        uow.add(csat_requested(survey))

    def _claim(self, token: str) -> SurveyClaim:
        claim = verify_token(self.secret, token)
        if claim is None:
            raise NotFound("survey")
        return claim

    async def public_survey(self, token: str) -> tuple[Survey, str]:
        """The survey a link names and its ticket's subject, if it can still be answered.
        NotFound for a forged link or an unknown survey; SurveyClosed (410) otherwise."""
        claim = self._claim(token)
        async with self.db.pool.acquire() as conn:
            found = await CsatStore(conn).get(claim.workspace_id, claim.survey_id)
        if found is None:
            raise NotFound("survey")
        survey, subject = found
        state = state_of(survey.expires_at, survey.rated_at, survey.superseded_at, datetime.now(UTC))
        if state is not SurveyState.PENDING:
            raise SurveyClosed(state)
        return survey, subject

    async def rate(self, token: str, raw: object) -> Survey:
        """Record the requester's answer, once, and publish ``csat.rated`` with it."""
        claim = self._claim(token)
        answer = parse_answer(raw)
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            store = CsatStore(uow.conn)
            survey = await store.rate(claim.workspace_id, claim.survey_id, answer.rating, answer.comment, now)
            if survey is None:
                found = await store.get(claim.workspace_id, claim.survey_id)
                if found is None:
                    raise NotFound("survey")
                existing = found[0]
                raise SurveyClosed(survey_state(existing, now))
            uow.add(csat_rated(survey))
        return survey

    async def erase(self, uow: PgUnitOfWork, workspace_id: str, ticket_ids: Sequence[UUID]) -> None:
        """An erased person's tickets: what they wrote in surveys goes; ratings stay (they name
        no one) so that CSAT figures still add up."""
        await CsatStore(uow.conn).erase_comments(workspace_id, ticket_ids)

    async def of_ticket(self, workspace_id: str, ticket_id: UUID) -> list[Survey]:
        """A ticket's surveys, newest first; NotFound outside the workspace."""
        async with self.db.pool.acquire() as conn:
            if await TicketsStore(conn).get(workspace_id, ticket_id) is None:
                raise NotFound("ticket")
            return await CsatStore(conn).of_ticket(workspace_id, ticket_id, MAX_SURVEYS_LISTED)


def survey_state(survey: Survey, now: datetime) -> SurveyState:
    return state_of(survey.expires_at, survey.rated_at, survey.superseded_at, now)

