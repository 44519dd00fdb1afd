"""crm.contacts.v1.ContactsService: maps proto <-> domain and calls service.py."""

from __future__ import annotations

from uuid import UUID

import grpc

from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crm_contacts.domain.errors import InvalidIdentity
from crm_contacts.domain.model import normalise_identity
from crm_contacts.service import ContactsService, IdentityRequest
from crm_contacts.wire import contact_to_proto, identity_to_proto, kind_from_proto
from crmkit.grpc import GrpcAuth

MAX_BATCH = 500


class ContactsServicer(contacts_pb2_grpc.ContactsServiceServicer):  # type: ignore[misc]
    def __init__(self, service: ContactsService, auth: GrpcAuth) -> None:
        self.service = service
        self.auth = auth

    async def ResolveIdentities(
        self, request: contacts_pb2.ResolveIdentitiesRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.ResolveIdentitiesResponse:
        caller = await self.auth.principal(context, "contacts:write")
        if len(request.identities) > MAX_BATCH:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} identities")
        requests = []
        for index, item in enumerate(request.identities):
            kind = kind_from_proto(item.identity.kind)
            if kind is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"identities[{index}]: no kind")
            assert kind is not None
            try:
                identity = normalise_identity(kind, item.identity.value)
            except InvalidIdentity as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"identities[{index}]: {exc}")
                raise
            requests.append(IdentityRequest(identity, item.display_name[:200], item.create_if_missing))
        resolutions = await self.service.resolve_identities(caller.workspace_id, requests)
        return contacts_pb2.ResolveIdentitiesResponse(resolutions=[
            contacts_pb2.Resolution(
                identity=identity_to_proto(r.identity),
                contact_id=str(r.contact_id) if r.contact_id else "",
                created=r.created,
            )
            for r in resolutions
        ])

    async def GetContact(
        self, request: contacts_pb2.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.Contact:
        caller = await self.auth.principal(context, "contacts:read")
        try:
            contact_id = UUID(request.contact_id)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "contact_id is not a UUID")
            raise
        contact = await self.service.get_contact(caller.workspace_id, contact_id)
        if contact is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such contact in this workspace")
        assert contact is not None
        return contact_to_proto(contact)
