"""Typed dependencies shared by contacts' routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from crm_contacts.service import ContactsService
from crm_contacts.service.companies import CompaniesService
from crm_contacts.service.privacy import PrivacyService
from crmkit.auth import Principal, require
from crmkit.web import state

Reader = Annotated[Principal, Depends(require("contacts:read"))]
Writer = Annotated[Principal, Depends(require("contacts:write"))]


Contacts = Annotated[ContactsService, Depends(state("service", ContactsService))]
Companies = Annotated[CompaniesService, Depends(state("companies", CompaniesService))]
Privacy = Annotated[PrivacyService, Depends(state("privacy", PrivacyService))]
