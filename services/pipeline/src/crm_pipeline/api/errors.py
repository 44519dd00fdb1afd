"""Pipeline's domain errors, forged page cursors and an unreachable contacts service as
problem+json: one mapping for the whole service."""

from __future__ import annotations

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crm_pipeline.domain.errors import Conflict, InvalidFields, NotFound, PipelineError, VersionMismatch
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
    if isinstance(exc, VersionMismatch):
        return stale(exc.current)
    if isinstance(exc, Conflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, InvalidCursor):
        return Problem(422, "invalid-cursor", "Invalid cursor", str(exc))
    if isinstance(exc, grpc.aio.AioRpcError):
        # Contacts checks a deal's references; without it nothing is written, and the caller retries.
        return Problem(503, "contacts-unavailable", "Try again", "Contacts could not be reached",
                       headers={"Retry-After": "1"})
    raise exc


def install_errors(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem_of(exc), request)

    app.add_exception_handler(PipelineError, handle)
    app.add_exception_handler(InvalidCursor, handle)
    app.add_exception_handler(grpc.aio.AioRpcError, handle)
