"""A person's data export (GDPR art. 15 and 20), the part every service serves: the servicer of
``crm.common.v1.PersonalDataService`` and the one JSON form of a part, with its size limits.

A service gives the servicer its use case, which reads the named sections (lists of stored
records) of the given contact ids in the caller's workspace, each fetched up to
``MAX_ITEMS + 1`` so that a cut can be told. Contacts gathers the parts into one archive.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import grpc

from crm.common.v1 import personal_data_pb2, personal_data_pb2_grpc
from crmkit.grpc import GrpcAuth

SERVICE = "crm.common.v1.PersonalDataService"
CONTENT_TYPE = "application/json"
MAX_CONTACT_IDS = 1000
# Per section of a part; and a whole part's JSON, which a caller must accept as one gRPC message.
MAX_ITEMS = 10_000
MAX_PART_BYTES = 32 * 1024 * 1024
# Room in MAX_PART_BYTES for what surrounds the records (service, ids, limits).
_ENVELOPE_BYTES = 256 * 1024

Sections = Mapping[str, Sequence[Mapping[str, Any]]]
# (workspace, contact ids) -> the sections held about them.
Export = Callable[[str, list[UUID]], Awaitable[Sections]]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)  # a driver's own type (ObjectId, ...): its text form


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False).encode()


def encode_part(service: str, workspace_id: str, contact_ids: Sequence[UUID], sections: Sections,
                exported_at: datetime | None = None) -> bytes:
    """The part as UTF-8 JSON: every section at most ``MAX_ITEMS`` records and all of them
    within ``MAX_PART_BYTES``; the sections that were cut are named in ``truncated``."""
    budget = MAX_PART_BYTES - _ENVELOPE_BYTES
    kept: dict[str, list[Mapping[str, Any]]] = {}
    truncated: list[str] = []
    for name, records in sections.items():
        kept[name] = []
        for record in records[:MAX_ITEMS]:
            size = len(_dumps(record)) + 2
            if size > budget:
                break
            budget -= size
            kept[name].append(record)
        if len(kept[name]) < len(records):
            truncated.append(name)
    return _dumps({
        "service": service,
        "workspace_id": workspace_id,
        "contact_ids": [str(i) for i in contact_ids],
        "exported_at": exported_at or datetime.now(UTC),
        "limits": {"max_items_per_section": MAX_ITEMS, "max_bytes": MAX_PART_BYTES},
        "truncated": truncated,
        **kept,
    })


class PersonalDataServicer(personal_data_pb2_grpc.PersonalDataServiceServicer):  # type: ignore[misc]
    """Registered under ``SERVICE`` beside the service's own servicer."""

    def __init__(self, service: str, export: Export, auth: GrpcAuth) -> None:
        self.service = service
        self.export = export
        self.auth = auth

    async def ExportPersonalData(
        self, request: personal_data_pb2.ExportPersonalDataRequest, context: grpc.aio.ServicerContext
    ) -> personal_data_pb2.PersonalDataPart:
        caller = await self.auth.principal(context, "internal")
        if caller.kind != "service":  # people (even admins) ask contacts for the whole export
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only services export personal data")
        if not 0 < len(request.contact_ids) <= MAX_CONTACT_IDS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"give between 1 and {MAX_CONTACT_IDS} contact_ids")
        try:
            contact_ids = list(dict.fromkeys(UUID(i) for i in request.contact_ids))
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a contact_id is not a UUID")
            raise
        sections = await self.export(caller.workspace_id, contact_ids)
        # Up to MAX_PART_BYTES of JSON: off the event loop.
        document = await asyncio.to_thread(encode_part, self.service, caller.workspace_id, contact_ids,
                                           sections)
        return personal_data_pb2.PersonalDataPart(service=self.service, json=document,
                                                  content_type=CONTENT_TYPE)
