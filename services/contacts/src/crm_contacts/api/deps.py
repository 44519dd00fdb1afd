"""Typed dependencies shared by contacts' routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm_contacts.service import ContactsService
from crm_contacts.service.companies import CompaniesService
from crm_contacts.service.privacy import PrivacyService
from crmkit.auth import Principal, require

Reader = Annotated[Principal, Depends(require("contacts:read"))]
Writer = Annotated[Principal, Depends(require("contacts:write"))]


def _contacts(request: Request) -> ContactsService:
    service = request.app.state.service
    assert isinstance(service, ContactsService)
    return service


def _companies(request: Request) -> CompaniesService:
    service = request.app.state.companies
    assert isinstance(service, CompaniesService)
    return service


def _privacy(request: Request) -> PrivacyService:
    service = request.app.state.privacy
    assert isinstance(service, PrivacyService)
    return service


Contacts = Annotated[ContactsService, Depends(_contacts)]
Companies = Annotated[CompaniesService, Depends(_companies)]
Privacy = Annotated[PrivacyService, Depends(_privacy)]
