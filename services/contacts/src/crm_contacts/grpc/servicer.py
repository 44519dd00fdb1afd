"""crm.contacts.v1.ContactsService: maps proto <-> domain and calls service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import grpc
from google.protobuf.json_format import MessageToDict

from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crm_contacts.domain.errors import InvalidFields, InvalidIdentity, NotFound
from crm_contacts.domain.model import IdentityKind, normalise_identity
from crm_contacts.service import ContactsService, IdentityRequest
from crm_contacts.service.companies import CompaniesService
from crm_contacts.service.privacy import PrivacyService
from crm_contacts.service.segments import MAX_STREAM_SEGMENTS, SegmentsService
from crm_contacts.wire import (
    company_to_proto,
    consent_to_proto,
    contact_to_proto,
    identity_to_proto,
    kind_from_proto,
)
from crm_contacts.wire_segments import audience_member_to_proto
from crmkit.grpc import GrpcAuth, uuid_or_abort

PAGE_BYTES = 1 << 20  # a StreamSegmentMemberPages message stops growing past this size

MAX_BATCH = 500


class ContactsServicer(contacts_pb2_grpc.ContactsServiceServicer):  # type: ignore[misc]
    def __init__(self, service: ContactsService, privacy: PrivacyService, auth: GrpcAuth) -> None:
        self.service = service
        self.privacy = privacy
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
            verified = None
            if item.verified_email:
                try:
                    verified = normalise_identity(IdentityKind.EMAIL, item.verified_email)
                except InvalidIdentity as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        f"identities[{index}].verified_email: {exc}")
                    raise
            requests.append(IdentityRequest(identity, item.display_name[:200], item.create_if_missing,
                                            verified))
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
        contact_id = await uuid_or_abort(context, request.contact_id, "contact_id")
        contact = await self.service.get_contact(caller.workspace_id, contact_id)
        if contact is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such contact in this workspace")
        assert contact is not None
        message = contact_to_proto(contact)
        found = await self.privacy.consents(caller.workspace_id, contact.id)
        if found is not None:
            message.consents.extend(consent_to_proto(record) for record in found[0])
        return message

    async def GetCompany(
        self, request: contacts_pb2.GetCompanyRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.Company:
        caller = await self.auth.principal(context, "contacts:read")
        company_id = await uuid_or_abort(context, request.company_id, "company_id")
        company = await CompaniesService(self.service.db).get(caller.workspace_id, company_id)
        if company is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such company in this workspace")
        assert company is not None
        return company_to_proto(company)

    async def UpdateContactFields(
        self, request: contacts_pb2.UpdateContactFieldsRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.Contact:
        """Tags added/removed and custom fields set by a service, through the REST update's rules."""
        caller = await self.auth.principal(context, "internal")
        contact_id = await uuid_or_abort(context, request.contact_id, "contact_id")
        current = await self.service.get_contact(caller.workspace_id, contact_id)
        if current is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such contact in this workspace")
        assert current is not None
        raw: dict[str, object] = {}
        if request.add_tags or request.remove_tags:
            gone = set(request.remove_tags)
            kept = [t for t in current.tags if t not in gone]
            added = [t for t in dict.fromkeys(request.add_tags) if t not in kept and t not in gone]
            raw["tags"] = kept + added
        if request.HasField("custom_fields"):
            raw["custom_fields"] = MessageToDict(request.custom_fields)
        try:
            updated = await self.service.update_contact(caller.workspace_id, caller.subject, current.id,
                                                        raw, None)
        except InvalidFields as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        except NotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such contact in this workspace")
            raise
        return contact_to_proto(updated)

    async def ConfirmErasure(
        self, request: contacts_pb2.ConfirmErasureRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.ConfirmErasureResponse:
        caller = await self.auth.principal(context, "internal")
        contact_id = await uuid_or_abort(context, request.contact_id, "contact_id")
        if not 0 < len(request.service) <= 64:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "service names the confirming service")
        try:
            complete = await self.privacy.confirm_erasure(caller.workspace_id, contact_id, request.service)
        except NotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no erasure of that contact in this workspace")
            raise
        return contacts_pb2.ConfirmErasureResponse(complete=complete)

    async def StreamSegmentMembers(
        self, request: contacts_pb2.StreamSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[contacts_pb2.AudienceMember]:
        async for page in self._audience(request, context):
            for member in page:
                yield member

    async def StreamSegmentMemberPages(
        self, request: contacts_pb2.StreamSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[contacts_pb2.AudiencePage]:
        async for page in self._audience(request, context):
            yield contacts_pb2.AudiencePage(members=page)

    async def _audience(
        self, request: contacts_pb2.StreamSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[list[contacts_pb2.AudienceMember]]:
        """The members as protobufs, in pages of at most AUDIENCE_PAGE and about PAGE_BYTES."""
        caller = await self.auth.principal(context, "contacts:read")
        try:
            include = [UUID(s) for s in request.segment_ids]
            exclude = [UUID(s) for s in request.exclude_segment_ids]
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "segment ids are UUIDs")
            raise
        if not include or len(include) + len(exclude) > MAX_STREAM_SEGMENTS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"1 to {MAX_STREAM_SEGMENTS} segment ids, excluded ones included")
        segments = SegmentsService(self.service.db)
        try:
            async for members in segments.audience(caller.workspace_id, include, exclude):
                page: list[contacts_pb2.AudienceMember] = []
                size = 0
                for member in members:
                    message = audience_member_to_proto(member)
                    size += message.ByteSize()
                    page.append(message)
                    if size >= PAGE_BYTES:  # far below gRPC's 4 MiB message limit
                        yield page
                        page, size = [], 0
                if page:
                    yield page
        except NotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such segment in this workspace")
            raise
