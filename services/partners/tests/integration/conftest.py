"""The partners service running against the run's real PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from crm_partners.main import create_app
from crm_partners.settings import Settings
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, free_port, running_app, token_for


@dataclass
class Partners:
    client: httpx.AsyncClient
    settings: Settings
    infra: InfraSettings

    @property
    def dsn(self) -> str:
        return self.infra.postgres_dsn_for(self.settings.database_name)

    def admin(self, workspace_id: str) -> dict[str, str]:
        """A workspace admin's headers."""
        return bearer(token_for(self.infra, workspace_id, roles=("admin",), subject="admin"))


@pytest.fixture(scope="module")
async def partners(infra: InfraSettings) -> AsyncIterator[Partners]:
    """The partners app; contacts is not running (erasure confirmations wait and retry)."""
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{free_port()}", webhook_allow_loopback=True,
                        webhook_poll_seconds=0.1)
    async with running_app(create_app(settings)) as client:
        yield Partners(client, settings, infra)
