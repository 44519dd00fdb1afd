"""Templates' use cases: write (validated), read, preview for a contact."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from crm_campaigns.domain import templates as rules
from crm_campaigns.domain.errors import Conflict, FieldError, InvalidFields, NotFound, VersionMismatch
from crm_campaigns.domain.model import Template
from crm_campaigns.service.audiences import Audiences
from crm_campaigns.store import templates as store
from crmkit.ids import uuid7
from crmkit.mongo import MongoDatabase

MAX_PAGE = 100
_LIMITS = {"name": 200, "subject": 998, "html": 500_000, "text": 200_000}


def _parts(body: dict[str, Any], current: Template | None) -> tuple[dict[str, Any], list[FieldError]]:
    """The template's fields from a request body (a partial one over ``current``), checked."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for key, limit in _LIMITS.items():
        value = body.get(key, getattr(current, key) if current else ("" if key in ("html", "text") else None))
        if not isinstance(value, str):
            errors.append(FieldError(key, "a string is required"))
            continue
        if len(value) > limit:
            errors.append(FieldError(key, f"at most {limit} characters"))
        values[key] = value
    if "name" in values and not values["name"].strip():
        errors.append(FieldError("name", "must not be empty"))
    if "subject" in values and not values["subject"].strip():
        errors.append(FieldError("subject", "must not be empty"))
    if not errors and not (values["html"].strip() or values["text"].strip()):
        errors.append(FieldError("text", "an HTML or a text part is required"))
    fields = body.get("fields", list(current.fields) if current else [])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields) or len(fields) > 100:
        errors.append(FieldError("fields", "a list of at most 100 custom field keys"))
        fields = []
    values["fields"] = tuple(dict.fromkeys(fields))
    if not errors:
        try:
            rules.validate(values, values["fields"])
        except InvalidFields as exc:
            errors.extend(exc.errors)
    return values, errors


class Templates:
    def __init__(self, db: MongoDatabase, audiences: Audiences, *, base_url: str) -> None:
        self.db = db
        self.audiences = audiences
        self.base_url = base_url.rstrip("/")

    async def create(self, workspace_id: str, body: dict[str, Any]) -> Template:
        values, errors = _parts(body, None)
        if errors:
            raise InvalidFields(errors)
        now = datetime.now(UTC)
        template = Template(id=str(uuid7()), workspace_id=workspace_id, name=values["name"],
                            subject=values["subject"], html=values["html"], text=values["text"],
                            fields=values["fields"], version=1, created_at=now, updated_at=now)
        async with self.db.unit_of_work() as uow:
            await store.insert_template(uow, template)
        return template

    async def get(self, workspace_id: str, template_id: str) -> Template:
        found = await store.get_template(self.db, workspace_id, template_id)
        if found is None:
            raise NotFound("template")
        return found

    async def update(self, workspace_id: str, template_id: str, body: dict[str, Any],
                     expected_version: int) -> Template:
        current = await self.get(workspace_id, template_id)
        if current.version != expected_version:
            raise VersionMismatch(current.version)
        values, errors = _parts(body, current)
        if errors:
            raise InvalidFields(errors)
        updated = replace(current, name=values["name"], subject=values["subject"], html=values["html"],
                          text=values["text"], fields=values["fields"], version=current.version + 1,
                          updated_at=datetime.now(UTC))
        async with self.db.unit_of_work() as uow:
            if not await store.replace_template(uow, updated, expected_version):
                raise VersionMismatch((await self.get(workspace_id, template_id)).version)
        return updated

    async def delete(self, workspace_id: str, template_id: str) -> None:
        await self.get(workspace_id, template_id)
        if await store.template_in_use(self.db, workspace_id, template_id):
            raise Conflict("a scheduled, sending or paused campaign uses this template")
        async with self.db.unit_of_work() as uow:
            await store.delete_template(uow, workspace_id, template_id)

    async def list(self, workspace_id: str, limit: int, after: str | None) -> list[Template]:
        return await store.list_templates(self.db, workspace_id, min(limit, MAX_PAGE), after)

    async def preview(self, workspace_id: str, template_id: str, contact_id: str) -> rules.Rendered:
        """The template rendered for the contact (no tracking links; the unsubscribe link is a
        placeholder)."""
        template = await self.get(workspace_id, template_id)
        recipient = await self.audiences.contact(workspace_id, contact_id)
        if recipient is None:
            raise NotFound("contact")
        variables = rules.context(recipient.contact, recipient.company, template.fields,
                                  f"{self.base_url}/v1/t/preview-unsubscribe")
        try:
            return rules.render(parts_of(template), variables)
        except rules.RenderError as exc:
            raise InvalidFields([FieldError("template", f"does not render for this contact: {exc}")]) from exc


def parts_of(template: Template) -> dict[str, str]:
    return {"subject": template.subject, "html": template.html, "text": template.text}
