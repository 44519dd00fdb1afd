"""Custom fields, whatever they are on (contacts, companies, tickets, deals): definitions per
workspace and entity, and the validation of values.

Values are stored as JSON, keyed by the field's key, so defining or removing a field never
changes a table. A removed field's old values stay on disk but are never read back: reads and
writes keep only the keys that are defined now.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_TEXT = 2000
MAX_OPTIONS = 200


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    ENUM = "enum"
    MULTI_ENUM = "multi_enum"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request: its path (``emails[1]``, ``custom_fields.plan``) and why."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class FieldDefinition:
    entity: str  # what the field is on: "contact", "company", "ticket", "deal"
    key: str
    label: str
    type: FieldType
    options: tuple[str, ...] = ()


def check_definition(definition: FieldDefinition) -> list[FieldError]:
    errors = []
    if not KEY.match(definition.key):
        errors.append(FieldError("key", "lower-case letters, digits and _, starting with a letter"))
    if not definition.label.strip() or len(definition.label) > 200:
        errors.append(FieldError("label", "between 1 and 200 characters"))
    choices = definition.type in (FieldType.ENUM, FieldType.MULTI_ENUM)
    if choices and not definition.options:
        errors.append(FieldError("options", f"a {definition.type.value} field needs options"))
    if not choices and definition.options:
        errors.append(FieldError("options", f"a {definition.type.value} field has no options"))
    if len(definition.options) > MAX_OPTIONS or len(set(definition.options)) != len(definition.options):
        errors.append(FieldError("options", f"at most {MAX_OPTIONS}, each once"))
    return errors


def validate_custom(
    definitions: dict[str, FieldDefinition], values: dict[str, Any], prefix: str = "custom_fields"
) -> tuple[dict[str, Any], list[FieldError]]:
    """The values in their stored form, and an error per unknown key or bad value.
    A ``None`` value clears the field."""
    clean: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in values.items():
        path = f"{prefix}.{key}"
        definition = definitions.get(key)
        if definition is None:
            errors.append(FieldError(path, "no such custom field in this workspace"))
            continue
        if value is None:
            clean[key] = None
            continue
        try:
            clean[key] = _coerce(definition, value)
        except ValueError as exc:
            errors.append(FieldError(path, str(exc)))
    return clean, errors


def defined_only(definitions: dict[str, FieldDefinition], stored: dict[str, Any]) -> dict[str, Any]:
    """What a read shows: the stored values of fields that are still defined."""
    return {k: v for k, v in stored.items() if k in definitions and v is not None}


def parse_text_value(definition: FieldDefinition, text: str) -> Any:
    """A value from a CSV cell: numbers, dates, booleans and lists (``a|b``) as text."""
    text = text.strip()
    if definition.type is FieldType.NUMBER:
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError as exc:
            raise ValueError("not a number") from exc
    if definition.type is FieldType.BOOLEAN:
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "y"):
            return True
        if lowered in ("false", "no", "0", "n"):
            return False
        raise ValueError("not a boolean (true/false, yes/no, 1/0)")
    if definition.type is FieldType.MULTI_ENUM:
        return [part.strip() for part in text.split("|") if part.strip()]
    return text


def _coerce(definition: FieldDefinition, value: Any) -> Any:
    kind = definition.type
    if kind is FieldType.TEXT:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise ValueError(f"text of at most {MAX_TEXT} characters")
        return value
    if kind is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError("a finite number")
        return value
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError("true or false")
        return value
    if kind is FieldType.DATE:
        if not isinstance(value, str):
            raise ValueError("a date as YYYY-MM-DD")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError as exc:
            raise ValueError("a date as YYYY-MM-DD") from exc
    if kind is FieldType.ENUM:
        if value not in definition.options:
            raise ValueError(f"one of {', '.join(definition.options)}")
        return value
    if not isinstance(value, list) or any(v not in definition.options for v in value):
        raise ValueError(f"a list of {', '.join(definition.options)}")
    return list(dict.fromkeys(value))


# -- the HTTP shapes of a definition, the same for every entity's /v1/<entity>-fields ----------


class FieldDefinitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(max_length=63, description="Lower-case letters, digits and _, starting with a letter")
    label: str = Field(max_length=200)
    type: FieldType
    options: list[str] = Field(default_factory=list, max_length=MAX_OPTIONS,
                               description="The choices of an enum or multi_enum field")

    def definition(self, entity: str) -> FieldDefinition:
        return FieldDefinition(entity, self.key, self.label, self.type, tuple(self.options))


class FieldDefinitionOut(BaseModel):
    key: str
    label: str
    type: FieldType
    options: list[str]

    @classmethod
    def of(cls, definition: FieldDefinition) -> FieldDefinitionOut:
        return cls(key=definition.key, label=definition.label, type=definition.type,
                   options=list(definition.options))


class FieldDefinitionsOut(BaseModel):
    items: list[FieldDefinitionOut]

    @classmethod
    def of(cls, definitions: list[FieldDefinition]) -> FieldDefinitionsOut:
        return cls(items=[FieldDefinitionOut.of(d) for d in definitions])
