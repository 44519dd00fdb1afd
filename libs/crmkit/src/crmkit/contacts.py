"""Other services' view of contacts over gRPC: resolve senders to contacts (creating unknown
ones), read a contact or a company, confirm an erasure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crmkit.grpc import DEFAULT_DEADLINE, ServiceCredentials


@dataclass(frozen=True)
class Sender:
    kind: str  # "email", "whatsapp", ...
    value: str
    display_name: str
    verified_email: str = ""


def identity(kind: str, value: str) -> common_pb2.Identity:
    """A contacts identity kind ("email", "chat_visitor", ...) and value as the proto."""
    return common_pb2.Identity(kind=f"IDENTITY_KIND_{kind.upper()}", value=value)


class UnknownSegment(Exception):
    """A segment asked for is not in the workspace (contacts answered NOT_FOUND)."""


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
                verified_email=s.verified_email,
            )
            for s in senders
        ])
        response = await self.stub.ResolveIdentities(
            request, timeout=DEFAULT_DEADLINE, metadata=self.credentials.metadata(workspace_id)
        )
        return [r.contact_id for r in response.resolutions]

    async def get_contact(self, workspace_id: str, contact_id: str) -> contacts_pb2.Contact | None:
        """The contact (a merged id answers with its survivor), or None when there is none."""
        try:
            contact: contacts_pb2.Contact = await self.stub.GetContact(
                contacts_pb2.GetContactRequest(contact_id=contact_id),
                timeout=DEFAULT_DEADLINE, metadata=self.credentials.metadata(workspace_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return contact

    async def get_company(self, workspace_id: str, company_id: str) -> contacts_pb2.Company | None:
        """The company, or None when the workspace has none with this id."""
        try:
            company: contacts_pb2.Company = await self.stub.GetCompany(
                contacts_pb2.GetCompanyRequest(company_id=company_id),
                timeout=DEFAULT_DEADLINE, metadata=self.credentials.metadata(workspace_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return company

    async def update_contact_fields(self, workspace_id: str, contact_id: str,
                                    add_tags: Sequence[str] = (), remove_tags: Sequence[str] = (),
                                    custom_fields: Mapping[str, Any] | None = None) -> None:
        """Add/remove tags and set custom fields (None removes one) of a contact. A contact
        gone (NOT_FOUND) is no error: there is nothing left to update."""
        request = contacts_pb2.UpdateContactFieldsRequest(contact_id=contact_id, add_tags=list(add_tags),
                                                          remove_tags=list(remove_tags))
        if custom_fields:
            request.custom_fields.update(dict(custom_fields))
        try:
            await self.stub.UpdateContactFields(request, timeout=DEFAULT_DEADLINE,
                                                metadata=self.credentials.metadata(workspace_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    async def confirm_erasure(self, workspace_id: str, contact_id: str, service: str) -> None:
        """Tell contacts this service has erased the person. NOT_FOUND (no erasure of that
        contact is pending) is no error: the erasure was confirmed before, or never asked."""
        try:
            await self.stub.ConfirmErasure(
                contacts_pb2.ConfirmErasureRequest(contact_id=contact_id, service=service),
                timeout=DEFAULT_DEADLINE, metadata=self.credentials.metadata(workspace_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    async def stream_segment_members(self, workspace_id: str, segment_ids: Sequence[str],
                                     exclude_segment_ids: Sequence[str] = (),
                                     timeout: float = 3600.0) -> AsyncIterator[contacts_pb2.AudienceMember]:
        """Every member of any of ``segment_ids`` and of none of ``exclude_segment_ids``, each
        once, in contact id order, with identities and consents. Raises UnknownSegment when a
        segment is not in the workspace, before the first member."""
        call = self.stub.StreamSegmentMemberPages(
            contacts_pb2.StreamSegmentMembersRequest(segment_ids=list(segment_ids),
                                                     exclude_segment_ids=list(exclude_segment_ids)),
            timeout=timeout, metadata=self.credentials.metadata(workspace_id))
        try:
            async for page in call:  # hundreds of members a message: gRPC costs per message
                for member in page.members:
                    yield member
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise UnknownSegment(exc.details() or "no such segment") from exc
            raise
        finally:
            call.cancel()
