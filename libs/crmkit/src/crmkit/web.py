"""The HTTP side of every service: the app factory, health and readiness, and ``serve``."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crmkit.auth import Authenticator
from crmkit.logging import configure_logging
from crmkit.problems import PROBLEM_JSON, install_problem_handlers
from crmkit.settings import ServiceSettings
from crmkit.telemetry import setup_telemetry

S = TypeVar("S", bound=ServiceSettings)
T = TypeVar("T")
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    *,
    title: str,
    description: str = "",
) -> FastAPI:
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.authenticator = Authenticator(settings.infra)
    install_problem_handlers(app)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    app.openapi = _documenting_problems(app)  # type: ignore[method-assign]
    return app


# What problems.py sends for every error, validation errors (422) included.
_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_FASTAPI_VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"


def _documenting_problems(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI, with validation errors documented as they are sent: FastAPI
    documents a 422 as application/json ``{"detail": [...]}``, but every error here is
    problem+json (a client generated from the document would misread it otherwise)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        for item in document.get("paths", {}).values():
            for operation in item.values():
                invalid = operation.get("responses", {}).get("422", {})
                media = invalid.get("content", {}).get("application/json", {})
                if media.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION_ERROR:
                    invalid["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        if "loc" in schemas.get("ValidationError", {}).get("properties", {}):
            del schemas["ValidationError"]  # FastAPI's, referenced only by HTTPValidationError
        schemas["Problem"] = _PROBLEM_SCHEMA
        app.openapi_schema = document
        return document

    return openapi


def state(name: str, kind: type[T]) -> Callable[[Request], T]:
    """A FastAPI dependency giving what the lifespan put in ``app.state.<name>``, typed:
    ``Service = Annotated[TicketsService, Depends(state("service", TicketsService))]``."""

    def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, kind):
            raise TypeError(f"app.state.{name} is not a {kind.__name__}")
        return value

    return dependency


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Alive: answers while the process runs; checks nothing else")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Ready: every dependency answers",
                responses={503: {"description": "A dependency does not answer"}})
    async def readyz(request: Request) -> Any:
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is None:
            return _not_ready({"runtime": "starting"})
        failures = await runtime.check_ready()
        if failures:
            return _not_ready(failures)
        return {"status": "ready"}

    @router.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # Scraped without credentials: it carries no personal data, and in Kubernetes a
        # NetworkPolicy admits only the monitoring namespace.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _not_ready(failures: dict[str, str]) -> JSONResponse:
    body = {"type": "https://crm.example/problems/not-ready", "title": "Not ready",
            "status": 503, "checks": failures}
    return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)


def tune_gc() -> None:
    """Collect garbage less often than CPython's default (every 700 allocations), which costs
    a service moving thousands of rows per batch a third of its time; what exists at start
    (modules, settings) is frozen out of every collection. Memory is still reclaimed: most
    objects die by reference counting, and cycles are still collected, in larger steps."""
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(50_000, second, third)


def serve(create_app: Callable[[S], FastAPI], settings: S) -> None:
    """Run one service process: logging, telemetry, then the app (HTTP, gRPC and consumers
    share its lifespan). SIGTERM and Ctrl-C drain it gracefully."""
    tune_gc()
    configure_logging(settings.service_name, settings.infra.log_level)
    setup_telemetry(settings.service_name, settings.infra.otel_exporter)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    server = uvicorn.Server(config)
    asyncio.run(_serve(server))


async def _serve(server: uvicorn.Server) -> None:
    await server.serve()
    if not server.started:
        raise SystemExit(1)


