"""Ingest's view of contacts over gRPC: resolve senders to contacts, creating unknown ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crm_ingest.wire import identity
from crmkit.grpc import DEFAULT_DEADLINE, ServiceCredentials


@dataclass(frozen=True)
class Sender:
    kind: str  # "email", "whatsapp", ...
    value: str
    display_name: str


class ContactsClient:
    SERVICE = "crm.contacts.v1.ContactsService"

    def __init__(self, channel: grpc.aio.Channel, credentials: ServiceCredentials) -> None:
        self.stub = contacts_pb2_grpc.ContactsServiceStub(channel)
        self.credentials = credentials

    async def resolve(self, workspace_id: str, senders: Sequence[Sender]) -> list[str]:
        """Contact ids in the order of ``senders``. Idempotent, so the channel retries it."""
        request = contacts_pb2.ResolveIdentitiesRequest(identities=[
            contacts_pb2.IdentityToResolve(
                identity=identity(s.kind, s.value),
                display_name=s.display_name,
                create_if_missing=True,
            )
            for s in senders
        ])
        response = await self.stub.ResolveIdentities(
            request, timeout=DEFAULT_DEADLINE, metadata=self.credentials.metadata(workspace_id)
        )
        return [r.contact_id for r in response.resolutions]
