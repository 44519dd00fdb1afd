"""One contacts app per test run (its consumers join their groups once), and a client for it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crm_contacts.main import create_app
from crm_contacts.settings import Settings
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, free_port, grpc_auth, running_app, token_for


class Contacts:
    def __init__(self, http: httpx.AsyncClient, stub: contacts_pb2_grpc.ContactsServiceStub,
                 infra: InfraSettings) -> None:
        self.http = http
        self.stub = stub
        self.infra = infra

    async def resolve(self, workspace: str, *identities: tuple[str, str], create: bool = True
                      ) -> contacts_pb2.ResolveIdentitiesResponse:
        request = contacts_pb2.ResolveIdentitiesRequest(identities=[
            contacts_pb2.IdentityToResolve(identity=common_pb2.Identity(kind=kind, value=value),
                                           display_name="Ada", create_if_missing=create)
            for kind, value in identities
        ])
        return await self.stub.ResolveIdentities(
            request, timeout=5, metadata=grpc_auth(token_for(self.infra, workspace)))

    def headers(self, workspace: str, **kwargs: Any) -> dict[str, str]:
        return bearer(token_for(self.infra, workspace, **kwargs))

    def grpc_metadata(self, workspace: str) -> tuple[tuple[str, str], ...]:
        return grpc_auth(token_for(self.infra, workspace))


@pytest.fixture(scope="session")
async def contacts(infra: InfraSettings) -> AsyncIterator[Contacts]:
    """Its own database and consumer group: it runs on while other packages' tests start
    contacts apps of their own, whose events it must neither take nor write elsewhere."""
    infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}c_",
                                     "consumer_group_prefix": f"{infra.consumer_group_prefix}c."})
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    async with running_app(create_app(settings)) as http:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
        yield Contacts(http, contacts_pb2_grpc.ContactsServiceStub(channel), infra)
        await channel.close()


def unique_email() -> str:
    return f"person-{secrets.token_hex(6)}@example.com"


def unique_workspace() -> str:
    """A workspace of one test's own, so tests never see each other's records."""
    return f"ws-{secrets.token_hex(6)}"
