"""Domain errors as problem+json: one mapping for every router."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crm_contacts.domain.errors import (
    Conflict,
    ContactsError,
    DuplicateIdentities,
    InvalidCursor,
    InvalidFields,
    NotFound,
    VersionMismatch,
)
from crm_contacts.domain.segments import InvalidSegment
from crmkit.etags import stale
from crmkit.pagination import InvalidCursor as InvalidPageCursor
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem, problem_response


def problem_of(exc: Exception) -> Problem:
    if isinstance(exc, InvalidFields):
        return Problem(422, "validation", "The request is not valid",
                       errors=[e.as_dict() for e in exc.errors])
    if isinstance(exc, NotFound):
        return NotFoundProblem(exc.what)
    if isinstance(exc, VersionMismatch):
        return stale(exc.current)
    if isinstance(exc, DuplicateIdentities):
        return Problem(409, "duplicate-identities", "Identities belong to other contacts",
                       "An identity belongs to at most one contact; merge them, or update the existing one",
                       duplicates=exc.owners)
    if isinstance(exc, InvalidCursor | InvalidPageCursor):
        return Problem(422, "invalid-cursor", "Invalid cursor", str(exc))
    if isinstance(exc, InvalidSegment):
        return Problem(422, "invalid-segment", "The segment is not valid", str(exc),
                       errors=[{"field": e.path, "message": e.message} for e in exc.errors])
    if isinstance(exc, Conflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    raise exc


def install_domain_errors(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem_of(exc), request)

    app.add_exception_handler(ContactsError, handle)
    app.add_exception_handler(InvalidPageCursor, handle)
