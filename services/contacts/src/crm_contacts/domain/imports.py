"""CSV imports: the job, the column mapping, the streaming CSV reader, and one row as a write.

A mapping names, for each CSV column it uses, the contact field the column fills
(docs/import-export.md). A row becomes the same plain write the API takes, validated by
``rules.validate_changes``; its errors name the CSV column, never the value.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from crm_contacts.domain.errors import ContactsError, FieldError
from crm_contacts.domain.model import Identity, IdentityKind
from crm_contacts.domain.rules import OTHER_KINDS, ContactChanges, validate_changes
from crmkit.fields import FieldDefinition, parse_text_value

MAX_MAPPED_COLUMNS = 200
MAX_COLUMN_NAME = 200
MAX_COMPANY_NAME = 200
# A record (a quoted cell may span lines) longer than this is refused rather than buffered.
MAX_RECORD_CHARS = 1_000_000

SINGLE_TARGETS = frozenset({"first_name", "last_name", "display_name", "lifecycle_stage", "owner_id",
                            "company"})
MULTI_TARGETS = frozenset({"emails", "phones", "tags"})
IDENTITY_PREFIX = "identities."
CUSTOM_PREFIX = "custom_fields."
_SPLIT = re.compile(r"[|;]")
_SPLIT_TAGS = re.compile(r"[|;,]")
_PATH = re.compile(r"^([a-z_]+)(?:\[(\d+)\])?")


class OnDuplicate(StrEnum):
    SKIP = "skip"
    UPDATE = "update"
    CREATE = "create"


class JobStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


class InvalidCsv(ContactsError):
    """The upload is not a CSV file this import can read; nothing was staged."""


class FileTooLarge(ContactsError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class ImportJob:
    id: UUID
    workspace_id: str
    created_by: str
    status: JobStatus
    mapping: dict[str, str]
    on_duplicate: OnDuplicate
    region: str | None
    columns: tuple[str, ...]
    total_rows: int
    position: int
    last_row: int
    created: int
    updated: int
    skipped: int
    failed: int
    error_rows: int
    file_bytes: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def progress(self) -> float:
        if self.status is JobStatus.DONE:
            return 100.0
        return round(100.0 * self.position / self.total_rows, 1) if self.total_rows else 0.0


@dataclass(frozen=True)
class RowError:
    row_no: int
    field: str
    message: str


def check_mapping(
    mapping: dict[str, str], definitions: dict[str, FieldDefinition]
) -> list[FieldError]:
    """An error per column whose target is unknown (or a custom field not defined here), per
    single-valued target mapped twice, and one when no column gives an identity."""
    errors: list[FieldError] = []
    single: dict[str, str] = {}
    for column, target in mapping.items():
        path = f"mapping.{column}"
        if not column.strip() or len(column) > MAX_COLUMN_NAME:
            errors.append(FieldError(path, f"a column name has 1 to {MAX_COLUMN_NAME} characters"))
        elif target.startswith(CUSTOM_PREFIX):
            key = target.removeprefix(CUSTOM_PREFIX)
            if key not in definitions:
                errors.append(FieldError(path, f"{target}: no such custom field in this workspace"))
        elif target.startswith(IDENTITY_PREFIX):
            kind = target.removeprefix(IDENTITY_PREFIX)
            if kind not in {k.value for k in OTHER_KINDS}:
                kinds = ", ".join(sorted(k.value for k in OTHER_KINDS))
                errors.append(FieldError(path, f"{target}: identities.<kind> is one of {kinds}"
                                               " (emails and phones have targets of their own)"))
        elif target not in SINGLE_TARGETS | MULTI_TARGETS:
            errors.append(FieldError(path, f"{target}: not an import target"))
        if (target in SINGLE_TARGETS or target.startswith(CUSTOM_PREFIX)) and target in single:
            errors.append(FieldError(path, f"{target}: already filled by column {single[target]!r}"))
        single.setdefault(target, column)
    if len(mapping) > MAX_MAPPED_COLUMNS:
        errors.append(FieldError("mapping", f"at most {MAX_MAPPED_COLUMNS} columns"))
    if mapping and not any(t in ("emails", "phones") or t.startswith(IDENTITY_PREFIX)
                           for t in mapping.values()):
        errors.append(FieldError("mapping", "no column gives an identity (emails, phones or"
                                            " identities.<kind>) to match rows by"))
    if not mapping:
        errors.append(FieldError("mapping", "map at least one column"))
    return errors


def mapped_indices(mapping: dict[str, str], header: Sequence[str]) -> list[int]:
    """Where each mapped column is in the file's header, in mapping order; InvalidCsv names a
    mapped column the file lacks or has twice."""
    names = [h.strip() for h in header]
    found = []
    for column in mapping:
        places = [i for i, name in enumerate(names) if name == column.strip()]
        if not places:
            raise InvalidCsv(f"the file has no column {column!r} (its header row names the columns)")
        if len(places) > 1:
            raise InvalidCsv(f"the file has {len(places)} columns named {column!r}")
        found.append(places[0])
    return found


class CsvStream:
    """Bytes in, complete records out, for a file that arrives in chunks. The text is UTF-8 (a
    byte-order mark is dropped); records end in a newline outside quotes (\\n or \\r\\n)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending = ""
        self.records = 0

    def feed(self, chunk: bytes) -> list[list[str]]:
        text = self._pending + self._decode(chunk, final=False)
        cut = text.rfind("\n") + 1
        if cut and text.count('"', 0, cut) % 2:  # the last newline is inside a quoted cell
            cut = _last_record_end(text, cut)
        if len(text) - cut > MAX_RECORD_CHARS:
            raise InvalidCsv(f"record {self.records + 1} is longer than {MAX_RECORD_CHARS} characters"
                             " (or a quoted cell never ends)")
        self._pending = text[cut:]
        return self._parse(text[:cut]) if cut else []

    def close(self) -> list[list[str]]:
        text = self._pending + self._decode(b"", final=True)
        self._pending = ""
        if text.count('"') % 2:
            raise InvalidCsv(f"record {self.records + 1}: a quoted cell never ends")
        return self._parse(text)

    def _decode(self, chunk: bytes, *, final: bool) -> str:
        try:
            return self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise InvalidCsv("the file is not UTF-8 text") from exc

    def _parse(self, text: str) -> list[list[str]]:
        if not text:
            return []
        try:
            records = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise InvalidCsv(f"after record {self.records}: {exc}") from exc
        self.records += len(records)
        return records


def _last_record_end(text: str, limit: int) -> int:
    """The end of the last record in ``text[:limit]``: after a newline outside quotes."""
    end, quotes, start = 0, 0, 0
    while (newline := text.find("\n", start, limit)) >= 0:
        quotes += text.count('"', start, newline)
        start = newline + 1
        if quotes % 2 == 0:
            end = start
    return end


@dataclass
class ParsedRow:
    row_no: int
    changes: ContactChanges | None  # None when the row has errors
    company: str | None
    errors: list[FieldError]
    # The column each identity kind came from, to name it in a duplicate's message.
    columns: dict[IdentityKind, str]
    identities: tuple[Identity, ...] = ()  # of a valid row


def read_rows(reader: RowReader, rows: Sequence[tuple[int, Sequence[str]]]) -> list[ParsedRow]:
    return [reader.read(row_no, cells) for row_no, cells in rows]


class RowReader:
    """Turns a staged row (the mapped cells, in mapping order) into a validated write."""

    def __init__(self, mapping: dict[str, str], definitions: dict[str, FieldDefinition],
                 region: str | None) -> None:
        self.columns = list(mapping.items())
        self.definitions = definitions
        self.region = region
        self.kind_columns: dict[IdentityKind, str] = {}
        for column, target in reversed(self.columns):
            if target in ("emails", "phones"):
                self.kind_columns[IdentityKind.EMAIL if target == "emails" else IdentityKind.PHONE] = column
            elif target.startswith(IDENTITY_PREFIX):
                self.kind_columns[IdentityKind(target.removeprefix(IDENTITY_PREFIX))] = column

    def read(self, row_no: int, cells: Sequence[str]) -> ParsedRow:
        raw: dict[str, Any] = {}
        origin: dict[str, list[str]] = {}  # per list target, the column of each value
        by_target: dict[str, str] = {}
        errors: list[FieldError] = []
        company = None
        for (column, target), cell in zip(self.columns, cells, strict=False):
            value = cell.strip()
            if not value:
                continue
            by_target[target] = column
            if target in ("emails", "phones", "tags"):
                parts = [p.strip() for p in (_SPLIT_TAGS if target == "tags" else _SPLIT).split(value)]
                parts = [p for p in parts if p]
                raw.setdefault(target, []).extend(parts)
                origin.setdefault(target, []).extend([column] * len(parts))
            elif target.startswith(IDENTITY_PREFIX):
                kind = target.removeprefix(IDENTITY_PREFIX)
                parts = [p.strip() for p in _SPLIT.split(value) if p.strip()]
                raw.setdefault("identities", []).extend({"kind": kind, "value": p} for p in parts)
                origin.setdefault("identities", []).extend([column] * len(parts))
            elif target.startswith(CUSTOM_PREFIX):
                definition = self.definitions.get(target.removeprefix(CUSTOM_PREFIX))
                try:
                    if definition is None:  # removed since the job was made
                        raise ValueError("no such custom field in this workspace")
                    raw.setdefault("custom_fields", {})[definition.key] = parse_text_value(definition, value)
                except ValueError as exc:
                    errors.append(FieldError(column, f"{target}: {exc}"))
            elif target == "company":
                company = value
                if len(value) > MAX_COMPANY_NAME:
                    errors.append(FieldError(column, f"company: at most {MAX_COMPANY_NAME} characters"))
            elif target == "lifecycle_stage":
                raw[target] = value.lower()
            else:
                raw[target] = value
        changes, invalid = validate_changes(raw, self.definitions, self.region)
        for error in invalid:
            errors.append(FieldError(self._column_of(error.field, origin, by_target),
                                     f"{_target_of(error.field)}: {error.message}"))
        identities = tuple(changes.all_identities())
        if not errors and not identities:
            errors.append(FieldError("", "the row has no email, phone or other identity to match it by"))
        if errors:
            return ParsedRow(row_no, None, company, errors, self.kind_columns)
        return ParsedRow(row_no, changes, company, errors, self.kind_columns, identities)

    def _column_of(self, path: str, origin: dict[str, list[str]], by_target: dict[str, str]) -> str:
        if path in by_target:
            return by_target[path]
        match = _PATH.match(path)
        if match is None:
            return path
        name, index = match.group(1), match.group(2)
        values = origin.get(name, [])
        if index is not None and int(index) < len(values):
            return values[int(index)]
        return values[0] if values else by_target.get(name, path)


def _target_of(path: str) -> str:
    match = _PATH.match(path)
    return match.group(1) if match and not path.startswith(CUSTOM_PREFIX) else path


def identity_label(identity: Identity) -> str:
    return "a phone" if identity.kind is IdentityKind.PHONE else (
        "an email" if identity.kind is IdentityKind.EMAIL else f"a {identity.kind.value} identity")
