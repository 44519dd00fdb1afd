"""Ticketing's domain errors (tickets and the knowledge base) and forged page cursors, as
problem+json: one mapping for the whole service."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crm_ticketing.domain import articles, csat, replies, transitions, views
from crm_ticketing.domain.assignment import AssignmentConflict
from crm_ticketing.domain.errors import InvalidFields, NotFound, TicketingError, VersionMismatch
from crm_ticketing.service.assignment import AssignmentBusy
from crm_ticketing.service.conversation import NoRecipient
from crm_ticketing.service.custom_fields import DuplicateField
from crm_ticketing.service.sla import SlaConflict
from crmkit.etags import stale
from crmkit.pagination import InvalidCursor
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem, problem_response


def problem_of(exc: Exception) -> Problem:
    if isinstance(exc, InvalidFields):
        return Problem(422, "validation", "The request is not valid",
                       errors=[e.as_dict() for e in exc.errors])
    if isinstance(exc, NotFound):
        return NotFoundProblem(exc.what)
    if isinstance(exc, DuplicateField):
        return Problem(409, "field-exists", "The field is defined already", str(exc),
                       errors=[{"field": "key", "message": "defined already"}])
    if isinstance(exc, replies.Collision):
        return Problem(409, "collision", "Others wrote in the ticket since the message you saw",
                       str(exc), messages=[m.as_dict() for m in exc.newer])
    if isinstance(exc, replies.MacroNameTaken):
        return Problem(409, "duplicate-name", "The name is taken", str(exc),
                       errors=[{"field": "name", "message": "another macro has this name"}])
    if isinstance(exc, NoRecipient):
        return Problem(409, "no-recipient", "Nowhere to send a reply", str(exc))
    if isinstance(exc, VersionMismatch):
        return stale(exc.current)
    if isinstance(exc, transitions.InvalidTransition):
        names: dict[str, Any] = {"from": exc.before.value, "to": exc.after.value}
        return Problem(422, "invalid-transition", "Not from this status", str(exc), **names)
    if isinstance(exc, articles.InvalidTransition):
        return Problem(422, "invalid-transition", "Not from this status", str(exc),
                       article_status=exc.status.value)
    if isinstance(exc, articles.DuplicateSlug):
        return Problem(409, "duplicate-slug", "The slug is taken", str(exc),
                       errors=[{"field": "slug", "message": f"another {exc.what} has this slug"}],
                       taken=exc.slug)
    if isinstance(exc, articles.Conflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, SlaConflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, AssignmentConflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, AssignmentBusy):
        return Problem(503, "busy", "Try again", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, InvalidCursor):
        return Problem(422, "invalid-cursor", "Invalid cursor", str(exc))
    if isinstance(exc, csat.SurveyClosed):
        return Problem(410, "survey-closed", "This survey can no longer be answered", str(exc),
                       state=exc.state.value)
    if isinstance(exc, views.NotOwner):
        return Problem(403, "not-owner", "Only the owner can do this", str(exc))
    if isinstance(exc, views.TooManyViews):
        return Problem(409, "too-many-views", "Too many views", str(exc))
    raise exc


def install_errors(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem_of(exc), request)

    app.add_exception_handler(TicketingError, handle)
    app.add_exception_handler(InvalidCursor, handle)
