"""The service starts against real servers and guards every route."""

from __future__ import annotations

import pytest

from .conftest import Partners

pytestmark = pytest.mark.integration


async def test_ready_and_every_v1_route_needs_credentials(partners: Partners) -> None:
    assert (await partners.client.get("/readyz")).status_code == 200
    spec = (await partners.client.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/") or "/public/" in path:
            continue
        for method in operations:
            response = await partners.client.request(method, path.replace("{", "").replace("}", ""))
            assert response.status_code == 401, (method, path)
            assert response.headers["content-type"].startswith("application/problem+json")
