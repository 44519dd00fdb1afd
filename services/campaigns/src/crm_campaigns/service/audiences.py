"""Who a campaign goes to, from contacts: the port the services use and its gRPC adapter."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Protocol

import grpc

from crm.contacts.v1 import contacts_pb2
from crm_campaigns.domain.errors import FieldError, InvalidFields
from crm_campaigns.wire import Recipient, company_values, contact_values, email_consent, recipient_of
from crmkit.contacts import ContactsClient, UnknownSegment


class Audiences(Protocol):
    def members(self, workspace_id: str, segments: Sequence[str], exclude: Sequence[str], *,
                company_details: bool = True) -> AsyncGenerator[Recipient, None]:
        """Members of any of ``segments`` and none of ``exclude``, once each, in contact id
        order. Raises InvalidFields (``audience.segments``) for a segment not in the workspace.
        Without ``company_details`` a recipient's company is what the contact's link says (id,
        name, role): no lookup per company."""
        ...

    async def contact(self, workspace_id: str, contact_id: str) -> Recipient | None: ...


class ContactsAudiences:
    COMPANY_CACHE = 100_000  # a few hundred bytes each

    def __init__(self, client: ContactsClient) -> None:
        self.client = client

    async def members(self, workspace_id: str, segments: Sequence[str], exclude: Sequence[str], *,
                      company_details: bool = True) -> AsyncGenerator[Recipient, None]:
        # This stream's companies, each looked up once; past the cap, every recipient of an
        # uncached company costs a GetCompany call (a large audience has tens of thousands).
        companies: dict[str, contacts_pb2.Company | None] = {}
        try:
            async for member in self.client.stream_segment_members(workspace_id, segments, exclude):
                recipient = recipient_of(member)
                if company_details and member.contact.companies:
                    company_id = member.contact.companies[0].company_id
                    if company_id not in companies and len(companies) < self.COMPANY_CACHE:
                        companies[company_id] = await self.client.get_company(workspace_id, company_id)
                    recipient = replace(recipient, company=company_values(member.contact,
                                                                          companies.get(company_id)))
                yield recipient
        except UnknownSegment as exc:
            raise InvalidFields([FieldError("audience.segments", f"unknown segment: {exc}")]) from exc

    async def contact(self, workspace_id: str, contact_id: str) -> Recipient | None:
        try:
            found = await self.client.get_contact(workspace_id, contact_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return None
            raise
        if found is None:
            return None
        company = None
        if found.companies:
            company = await self.client.get_company(workspace_id, found.companies[0].company_id)
        values = contact_values(found)
        return Recipient(contact_id=found.id, email=values["email"],
                         marketing_consent=email_consent(found.consents), time_zone="",
                         contact=values, company=company_values(found, company))
