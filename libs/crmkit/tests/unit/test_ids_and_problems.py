import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.errors import NodeNotReadyError
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from crmkit import Problem, ServiceSettings, create_service_app
from crmkit.ids import derived_id, uuid7


def test_uuid7_ids_are_version_7_and_ordered_by_time() -> None:
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert str(first) < str(second)


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_id("ws", "email", "m1") == derived_id("ws", "email", "m1")
    assert derived_id("ws", "email", "m1") != derived_id("ws2", "email", "m1")
    assert derived_id("a", "bc") != derived_id("ab", "c")


class Body(BaseModel):
    email: str
    age: int


def _app() -> TestClient:
    router = APIRouter()

    @router.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"ok": "yes"}

    @router.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "conflict", "Conflict", "it changed")

    @router.get("/publish")
    async def publish() -> None:
        raise NodeNotReadyError("Attempt to send a request to node which is not ready (node id 1).")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = create_service_app(ServiceSettings(), lifespan, [router], title="t")
    return TestClient(app, raise_server_exceptions=False)


def test_invalid_input_is_a_422_problem_naming_fields_without_echoing_values() -> None:
    response = _app().post("/things", json={"email": "ada@example.com", "age": "old"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/validation")
    assert [e["field"] for e in body["errors"]] == ["body.age"]
    assert "ada@example.com" not in response.text
    assert "old" not in response.text


def test_domain_problems_keep_their_status_and_type() -> None:
    response = _app().get("/conflict")
    assert response.status_code == 409
    assert response.json()["type"].endswith("/conflict")


def test_an_unexpected_error_is_a_500_problem_that_reveals_nothing() -> None:
    response = _app().get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret detail" not in response.text


def test_health_needs_no_dependency_and_readiness_reports_starting() -> None:
    client = _app()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"runtime": "starting"}


def test_an_unreachable_broker_is_a_503_to_retry_not_a_500() -> None:
    response = _app().get("/publish")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"].endswith("/event-stream-unavailable")
