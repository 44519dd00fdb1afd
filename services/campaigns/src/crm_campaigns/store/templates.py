"""Templates' queries (collection made by ``store.campaigns.prepare``)."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING

from crm_campaigns.domain.model import Template
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


def template_of(doc: dict[str, Any]) -> Template:
    return Template(id=doc["_id"], workspace_id=doc["workspace_id"], name=doc["name"],
                    subject=doc["subject"], html=doc["html"], text=doc["text"],
                    fields=tuple(doc.get("fields", [])), version=doc["version"],
                    created_at=doc["created_at"], updated_at=doc["updated_at"])


def template_doc(t: Template) -> dict[str, Any]:
    return {"_id": t.id, "workspace_id": t.workspace_id, "name": t.name, "subject": t.subject,
            "html": t.html, "text": t.text, "fields": list(t.fields), "version": t.version,
            "created_at": t.created_at, "updated_at": t.updated_at}


async def insert_template(uow: MongoUnitOfWork, template: Template) -> None:
    await uow.db.templates.insert_one(template_doc(template), session=uow.session)


async def get_template(database: MongoDatabase, workspace_id: str, template_id: str) -> Template | None:
    doc = await database.db.templates.find_one({"_id": template_id, "workspace_id": workspace_id})
    return template_of(doc) if doc else None


async def replace_template(uow: MongoUnitOfWork, template: Template, expected_version: int) -> bool:
    result = await uow.db.templates.replace_one(
        {"_id": template.id, "workspace_id": template.workspace_id, "version": expected_version},
        template_doc(template), session=uow.session)
    return result.matched_count == 1


async def delete_template(uow: MongoUnitOfWork, workspace_id: str, template_id: str) -> bool:
    result = await uow.db.templates.delete_one({"_id": template_id, "workspace_id": workspace_id},
                                               session=uow.session)
    return result.deleted_count == 1


async def list_templates(database: MongoDatabase, workspace_id: str, limit: int,
                         after: str | None) -> list[Template]:
    query: dict[str, Any] = {"workspace_id": workspace_id}
    if after:
        query["_id"] = {"$lt": after}
    cursor = database.db.templates.find(query).sort("_id", DESCENDING).limit(limit)
    return [template_of(d) async for d in cursor]


async def template_in_use(database: MongoDatabase, workspace_id: str, template_id: str) -> bool:
    return await database.db.campaigns.find_one(
        {"workspace_id": workspace_id, "template_id": template_id,
         "status": {"$in": ["scheduled", "sending", "paused"]}}) is not None
