"""A person's data export (GDPR art. 15 and 20): contacts' own document and every other
service's part, gathered into one archive with a manifest of what answered."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

OK = "ok"


@dataclass(frozen=True)
class SourcePart:
    """One service's part of the export: its JSON, or why there is none."""

    service: str
    status: str  # "ok", or "unavailable: <reason>"
    content: bytes | None = None  # UTF-8 JSON when the service answered


class PersonalDataSources(Protocol):
    """The services that hold personal data, asked together (the port; the gRPC adapter is
    ``crm_contacts.personal_data_sources``)."""

    async def gather(self, workspace_id: str, contact_ids: Sequence[UUID]) -> list[SourcePart]: ...


@dataclass(frozen=True)
class PersonalDataExport:
    workspace_id: str
    contact_id: UUID  # the person: a merged-away id's survivor
    contact_ids: tuple[UUID, ...]  # the person and every id merged into them
    exported_at: datetime
    contacts: dict[str, Any]  # what contacts holds
    parts: tuple[SourcePart, ...]  # what the other services answered, by name

    def manifest(self) -> dict[str, Any]:
        parts: list[dict[str, str | None]] = [{"service": "contacts", "file": "contacts.json", "status": OK}]
        parts += [{"service": p.service, "file": f"{p.service}.json" if p.status == OK else None,
                   "status": p.status} for p in self.parts]
        return {
            "workspace_id": self.workspace_id,
            "contact_id": str(self.contact_id),
            "contact_ids": [str(i) for i in self.contact_ids],
            "exported_at": self.exported_at.isoformat(),
            "parts": parts,
        }

    def archive(self) -> bytes:
        """A zip: ``manifest.json``, ``contacts.json`` and ``<service>.json`` for each service
        that answered. Parts are written as they came; names are configured ones, never sent."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", _json(self.manifest()))
            archive.writestr("contacts.json", _json(self.contacts))
            for part in self.parts:
                if part.status == OK and part.content is not None:
                    archive.writestr(f"{part.service}.json", part.content)
        return buffer.getvalue()

    def inline(self) -> dict[str, Any]:
        """One JSON document: contacts' document with every part inline under ``services``."""
        services: dict[str, Any] = {}
        for part in self.parts:
            services[part.service] = {"status": part.status, "data": None}
            if part.status == OK and part.content is not None:
                try:
                    services[part.service]["data"] = json.loads(part.content)
                except ValueError:
                    services[part.service]["status"] = "unavailable: the part is not valid JSON"
        return {**self.contacts, "services": services}


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=2, default=str).encode()
