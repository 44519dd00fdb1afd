from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from crm_contacts.domain.model import Company, Contact, TimelineEntry
from crm_contacts.store.audit import AuditEntry
from crmkit.fields import FieldDefinition


class IdentityIn(BaseModel):
    kind: str = Field(max_length=32)
    value: str = Field(max_length=320)


class CompanyLinkIn(BaseModel):
    company_id: UUID
    role: str = Field(default="", max_length=100)


class ContactIn(BaseModel):
    """A contact write: only the fields sent are changed (PATCH) or set (POST)."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, max_length=1000)
    last_name: str | None = Field(default=None, max_length=1000)
    display_name: str | None = Field(default=None, max_length=1000)
    emails: list[str] | None = Field(default=None, max_length=50)
    phones: list[str] | None = Field(default=None, max_length=50)
    identities: list[IdentityIn] | None = Field(default=None, max_length=50)
    addresses: list[dict[str, Any]] | None = Field(default=None, max_length=20)
    owner_id: str | None = Field(default=None, max_length=1000)
    lifecycle_stage: str | None = Field(default=None, max_length=50)
    tags: list[str] | None = Field(default=None, max_length=200)
    custom_fields: dict[str, Any] | None = Field(default=None, max_length=500)
    companies: list[CompanyLinkIn] | None = Field(default=None, max_length=100)

    def given(self) -> dict[str, Any]:
        """The fields the caller sent, as plain values."""
        return self.model_dump(mode="json", exclude_unset=True)


class IdentityOut(BaseModel):
    kind: str
    value: str


class CompanyLinkOut(BaseModel):
    company_id: UUID
    name: str
    role: str


class ContactOut(BaseModel):
    id: UUID
    display_name: str
    first_name: str
    last_name: str
    identities: list[IdentityOut]
    emails: list[str]
    phones: list[str]
    addresses: list[dict[str, str]]
    owner_id: str | None
    lifecycle_stage: str
    tags: list[str]
    custom_fields: dict[str, Any]
    companies: list[CompanyLinkOut]
    interaction_count: int
    version: int
    created_at: datetime
    updated_at: datetime | None
    last_seen_at: datetime | None

    @classmethod
    def of(cls, contact: Contact) -> ContactOut:
        return cls(
            id=contact.id,
            display_name=contact.display_name,
            first_name=contact.first_name,
            last_name=contact.last_name,
            identities=[IdentityOut(kind=i.kind.value, value=i.value) for i in contact.identities],
            emails=[i.value for i in contact.identities if i.kind.value == "email"],
            phones=[i.value for i in contact.identities if i.kind.value == "phone"],
            addresses=list(contact.addresses),
            owner_id=contact.owner_id,
            lifecycle_stage=contact.lifecycle_stage.value,
            tags=list(contact.tags),
            custom_fields=contact.custom,
            companies=[CompanyLinkOut(company_id=c.company_id, name=c.name, role=c.role)
                       for c in contact.companies],
            interaction_count=contact.interaction_count,
            version=contact.version,
            created_at=contact.created_at,
            updated_at=contact.updated_at,
            last_seen_at=contact.last_seen_at,
        )


class ContactPageOut(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None


class CompanyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=300)
    domains: list[str] | None = Field(default=None, max_length=50)
    industry: str | None = Field(default=None, max_length=200)
    size: int | None = Field(default=None, ge=0, le=10_000_000)
    custom_fields: dict[str, Any] | None = Field(default=None, max_length=500)

    def given(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class CompanyOut(BaseModel):
    id: UUID
    name: str
    domains: list[str]
    industry: str | None
    size: int | None
    custom_fields: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, company: Company) -> CompanyOut:
        return cls(id=company.id, name=company.name, domains=list(company.domains), industry=company.industry,
                   size=company.size, custom_fields=company.custom, version=company.version,
                   created_at=company.created_at, updated_at=company.updated_at)


class CompanyPageOut(BaseModel):
    items: list[CompanyOut]
    next_cursor: str | None


class FieldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity: str = Field(default="contact", pattern="^(contact|company)$")
    key: str = Field(max_length=63)
    label: str = Field(max_length=200)
    type: str = Field(pattern="^(text|number|date|enum|multi_enum|boolean)$")
    options: list[str] = Field(default_factory=list, max_length=200)


class FieldOut(BaseModel):
    entity: str
    key: str
    label: str
    type: str
    options: list[str]

    @classmethod
    def of(cls, definition: FieldDefinition) -> FieldOut:
        return cls(entity=str(definition.entity), key=definition.key, label=definition.label,
                   type=definition.type.value, options=list(definition.options))


class AuditOut(BaseModel):
    id: int
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(id=entry.id, action=entry.action, actor=entry.actor, at=entry.at, before=entry.before,
                   after=entry.after)


class AuditPageOut(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class TimelineEntryOut(BaseModel):
    id: str
    kind: str
    channel: str
    direction: str
    summary: str
    occurred_at: datetime

    @classmethod
    def of(cls, entry: TimelineEntry) -> TimelineEntryOut:
        return cls(id=entry.entry_id, kind=entry.kind, channel=entry.channel,
                   direction=entry.direction, summary=entry.summary, occurred_at=entry.occurred_at)


class TimelinePageOut(BaseModel):
    items: list[TimelineEntryOut]
    next_cursor: str | None
