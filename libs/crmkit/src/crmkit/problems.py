"""RFC 9457 problem details: every error a caller sees is application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://crm.example/problems/"


class Problem(Exception):
    """A caller-facing error with a stable ``type`` slug."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_BASE + self.slug, "title": self.title}
        body["status"] = self.status
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class NotFound(Problem):
    def __init__(self, what: str) -> None:
        super().__init__(404, "not-found", "Not found", f"No such {what} in this workspace")


class Unauthorized(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(401, "unauthorized", "Unauthorized", detail,
                         headers={"WWW-Authenticate": 'Bearer realm="crm"'})


class Forbidden(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(403, "forbidden", "Forbidden", detail)


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    return JSONResponse(
        problem.body(request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Name the fields, never echo the values: they may be personal data.
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        problem = Problem(422, "validation", "The request is not valid", errors=errors)
        return problem_response(problem, request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = Problem(exc.status_code, f"http-{exc.status_code}", str(exc.detail),
                          headers=dict(exc.headers or {}))
        return problem_response(problem, request)

    async def on_broker_unreachable(request: Request, exc: Exception) -> JSONResponse:
        # The broker is down or restarting: nothing was taken, and the same request sent
        # again shortly will be (channel providers retry a 503 with Retry-After).
        log.warning("the event stream is unreachable",
                    extra={"path": request.url.path, "error": type(exc).__name__})
        problem = Problem(503, "event-stream-unavailable", "Try again",
                          "the event stream could not take the request: send it again",
                          headers={"Retry-After": "2"})
        return problem_response(problem, request)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        problem = Problem(500, "internal", "Internal error")
        return problem_response(problem, request)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(KafkaError, on_broker_unreachable)
    app.add_exception_handler(Exception, on_unexpected)
