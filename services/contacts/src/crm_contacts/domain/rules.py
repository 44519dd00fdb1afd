"""The rules of a contact write: what a valid contact is, and how a merge chooses fields.

A write names only the fields it changes. ``emails`` and ``phones`` replace the contact's
identities of that kind; ``identities`` replaces those of every other kind (chat visitor,
WhatsApp, Messenger, Instagram, Telegram, X).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from crm_contacts.domain.errors import FieldError, InvalidIdentity
from crm_contacts.domain.model import (
    Contact,
    Identity,
    IdentityKind,
    LifecycleStage,
    normalise_identity,
)
from crmkit.fields import FieldDefinition, validate_custom

MAX_NAME = 200
MAX_TAGS = 50
MAX_IDENTITIES = 50
ADDRESS_KEYS = frozenset({"label", "street", "city", "region", "postal_code", "country"})
_TAG = re.compile(r"^[\w][\w .:/-]{0,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
OTHER_KINDS = frozenset(IdentityKind) - {IdentityKind.EMAIL, IdentityKind.PHONE}

# The fields a merge chooses one side of; identities, tags, companies and custom fields of
# both sides are kept (the survivor's custom value wins unless the choice says otherwise).
MERGE_FIELDS = ("first_name", "last_name", "display_name", "owner_id", "lifecycle_stage", "addresses")


@dataclass
class ContactChanges:
    """A validated write: each attribute is set only when the caller gave that field."""

    given: frozenset[str]
    first_name: str = ""
    last_name: str = ""
    display_name: str = ""
    owner_id: str | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.SUBSCRIBER
    tags: tuple[str, ...] = ()
    addresses: tuple[dict[str, str], ...] = ()
    custom: dict[str, Any] = field(default_factory=dict)
    companies: tuple[tuple[UUID, str], ...] = ()
    # Replacement identities per kind group: 'emails', 'phones', 'identities'.
    identities: dict[str, tuple[Identity, ...]] = field(default_factory=dict)

    def all_identities(self) -> list[Identity]:
        return [i for group in self.identities.values() for i in group]


def validate_changes(
    raw: dict[str, Any], definitions: dict[str, FieldDefinition], region: str | None = None
) -> tuple[ContactChanges, list[FieldError]]:
    """Normalise a write given as plain values (the fields the caller sent), collecting an error
    per bad field rather than stopping at the first."""
    errors: list[FieldError] = []
    changes = ContactChanges(given=frozenset(raw))
    for name in ("first_name", "last_name", "display_name"):
        if name in raw:
            value = (raw[name] or "").strip()
            if len(value) > MAX_NAME:
                errors.append(FieldError(name, f"at most {MAX_NAME} characters"))
            setattr(changes, name, value)
    if "owner_id" in raw:
        owner = raw["owner_id"]
        if owner is not None and (not isinstance(owner, str) or not 0 < len(owner) <= 200):
            errors.append(FieldError("owner_id", "a user id of at most 200 characters"))
        changes.owner_id = owner or None
    if "lifecycle_stage" in raw:
        try:
            changes.lifecycle_stage = LifecycleStage(raw["lifecycle_stage"])
        except ValueError:
            stages = ", ".join(s.value for s in LifecycleStage)
            errors.append(FieldError("lifecycle_stage", f"one of {stages}"))
    if "tags" in raw:
        tags = [t.strip().lower() for t in raw["tags"] or []]
        for index, tag in enumerate(tags):
            if not _TAG.match(tag):
                errors.append(FieldError(f"tags[{index}]", "letters, digits, space . : / - _; at most 64"))
        if len(tags) > MAX_TAGS:
            errors.append(FieldError("tags", f"at most {MAX_TAGS} tags"))
        changes.tags = tuple(sorted(set(tags)))
    if "addresses" in raw:
        changes.addresses = tuple(_addresses(raw["addresses"] or [], errors))
    if "custom_fields" in raw:
        changes.custom, custom_errors = validate_custom(definitions, raw["custom_fields"] or {})
        errors.extend(custom_errors)
    if "companies" in raw:
        links = {}
        for index, link in enumerate(raw["companies"] or []):
            try:
                links[UUID(str(link["company_id"]))] = str(link.get("role") or "")[:100]
            except (KeyError, ValueError, TypeError):
                errors.append(FieldError(f"companies[{index}].company_id", "a company id"))
        changes.companies = tuple(links.items())
    for group, kind in (("emails", IdentityKind.EMAIL), ("phones", IdentityKind.PHONE)):
        if group in raw:
            values = [(kind.value, v) for v in raw[group] or []]
            changes.identities[group] = _identities(group, values, region, errors, kinds={kind})
    if "identities" in raw:
        values = [(i.get("kind", ""), i.get("value", "")) for i in raw["identities"] or []]
        changes.identities["identities"] = _identities("identities", values, region, errors, OTHER_KINDS)
    if len(changes.all_identities()) > MAX_IDENTITIES:
        errors.append(FieldError("identities", f"at most {MAX_IDENTITIES} identities per contact"))
    return changes, errors


def display_name_of(first: str, last: str, identities: list[Identity]) -> str:
    name = f"{first} {last}".strip()
    if name:
        return name
    return identities[0].value if identities else ""


def merged_identities(current: tuple[Identity, ...], changes: ContactChanges) -> list[Identity]:
    """The contact's identities after ``changes``: each given group replaces its kinds."""
    replaced: set[IdentityKind] = set()
    if "emails" in changes.identities:
        replaced.add(IdentityKind.EMAIL)
    if "phones" in changes.identities:
        replaced.add(IdentityKind.PHONE)
    if "identities" in changes.identities:
        replaced |= OTHER_KINDS
    kept = [i for i in current if i.kind not in replaced]
    return list(dict.fromkeys([*kept, *changes.all_identities()]))


def merge_choices(raw: dict[str, str]) -> tuple[dict[str, str], list[FieldError]]:
    """Which side each field of a merge comes from: 'survivor' (the default) or 'loser'.
    Custom fields are named ``custom_fields.<key>``."""
    errors = []
    for name, side in raw.items():
        if name not in MERGE_FIELDS and not name.startswith("custom_fields."):
            errors.append(FieldError(f"fields.{name}", "not a field a merge chooses"))
        elif side not in ("survivor", "loser"):
            errors.append(FieldError(f"fields.{name}", "survivor or loser"))
    return raw, errors


def merged_values(survivor: Contact, loser: Contact, choices: dict[str, str]) -> dict[str, Any]:
    """The survivor's new field values: chosen sides, unions of tags, custom fields filled in."""

    def pick(name: str) -> Any:
        chosen = loser if choices.get(name) == "loser" else survivor
        value = getattr(chosen, name)
        if not value and chosen is survivor:  # an empty survivor field takes the loser's
            value = getattr(loser, name)
        return value

    custom = {**loser.custom, **survivor.custom}
    for name, side in choices.items():
        if name.startswith("custom_fields.") and side == "loser":
            key = name.removeprefix("custom_fields.")
            if key in loser.custom:
                custom[key] = loser.custom[key]
    values = {name: pick(name) for name in MERGE_FIELDS}
    values["tags"] = tuple(sorted(set(survivor.tags) | set(loser.tags)))
    values["custom"] = custom
    return values


def _addresses(raw: list[Any], errors: list[FieldError]) -> list[dict[str, str]]:
    clean = []
    for index, address in enumerate(raw[:10]):
        if not isinstance(address, dict):
            errors.append(FieldError(f"addresses[{index}]", "an object"))
            continue
        unknown = set(address) - ADDRESS_KEYS
        if unknown:
            errors.append(FieldError(f"addresses[{index}].{sorted(unknown)[0]}", "not an address field"))
            continue
        item = {k: str(v).strip()[:200] for k, v in address.items() if v}
        if "country" in item:
            item["country"] = item["country"].upper()
            if not _COUNTRY.match(item["country"]):
                errors.append(FieldError(f"addresses[{index}].country", "an ISO 3166 alpha-2 code"))
        clean.append(item)
    if len(raw) > 10:
        errors.append(FieldError("addresses", "at most 10 addresses"))
    return clean


def _identities(
    group: str, values: list[tuple[str, str]], region: str | None, errors: list[FieldError],
    kinds: frozenset[IdentityKind] | set[IdentityKind],
) -> tuple[Identity, ...]:
    found: list[Identity] = []
    for index, (kind_name, value) in enumerate(values):
        path = f"{group}[{index}]"
        try:
            kind = IdentityKind(kind_name)
        except ValueError:
            errors.append(FieldError(f"{path}.kind", "not an identity kind"))
            continue
        if kind not in kinds:
            errors.append(FieldError(f"{path}.kind", "emails and phones have fields of their own"))
            continue
        try:
            found.append(normalise_identity(kind, str(value), region))
        except InvalidIdentity as exc:
            errors.append(FieldError(path if group != "identities" else f"{path}.value", exc.reason))
    return tuple(dict.fromkeys(found))
