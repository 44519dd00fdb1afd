"""Typed dependencies shared by contacts' routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from crm_contacts.service import ContactsService
from crm_contacts.service.companies import CompaniesService
from crm_contacts.service.privacy import PrivacyService
from crmkit.auth import Principal, require
from crmkit.web import state

Reader = Annotated[Principal, Depends(require("contacts:read"))]
Writer = Annotated[Principal, Depends(require("contacts:write"))]
# An audit page's cursor: an audit entry's id, a PostgreSQL bigint (a larger number is a 422,
# not a failed query).
AuditCursor = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


Contacts = Annotated[ContactsService, Depends(state("service", ContactsService))]
Companies = Annotated[CompaniesService, Depends(state("companies", CompaniesService))]
Privacy = Annotated[PrivacyService, Depends(state("privacy", PrivacyService))]
