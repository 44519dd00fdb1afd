"""How one batch of import rows lands: which row creates, updates or skips which contact.

Pure: given the batch's rows (validated), who owns their identities now, which of them belong
to erased people, and the current contacts they match, it decides row by row in file order, as
if the rows were applied one at a time. A later row that shares an identity with an earlier
one (in this batch, or committed by an earlier batch) is a duplicate within the file.

An import adds to a contact: identities, tags and companies are added to those it has, given
custom fields are set, and the other given fields replace theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from crm_contacts.domain.imports import OnDuplicate, ParsedRow, RowError, identity_label
from crm_contacts.domain.model import Contact, Identity, LifecycleStage
from crm_contacts.domain.rules import MAX_IDENTITIES, MAX_TAGS, ContactChanges, display_name_of

SUPPRESSED = "suppressed (erased person)"


@dataclass
class Draft:
    """A contact as the batch leaves it: an existing one (``contact``) or a new one."""

    contact: Contact | None
    first_row: int
    first_name: str = ""
    last_name: str = ""
    display_name: str = ""
    owner_id: str | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.SUBSCRIBER
    tags: set[str] = field(default_factory=set)
    custom: dict[str, Any] = field(default_factory=dict)
    identities: list[Identity] = field(default_factory=list)
    new_companies: list[str] = field(default_factory=list)  # names, linked by this import
    names_given: bool = False
    display_given: bool = False
    changed: bool = False

    @classmethod
    def of(cls, contact: Contact, row_no: int) -> Draft:
        return cls(contact, row_no, contact.first_name, contact.last_name, contact.display_name,
                   contact.owner_id, contact.lifecycle_stage, set(contact.tags), dict(contact.custom),
                   list(contact.identities))

    def apply(self, changes: ContactChanges, identities: Sequence[Identity], company: str | None, *,
              track: bool = True) -> bool:
        """Fill in the row's fields; True when that changed the contact (always, untracked: a
        new contact's first row). ValueError when the contact would pass a limit."""
        given = changes.given
        fresh = [i for i in identities if i not in self.identities]
        if len(self.identities) + len(fresh) > MAX_IDENTITIES:
            raise ValueError(f"the contact would have more than {MAX_IDENTITIES} identities")
        if len(self.tags | set(changes.tags)) > MAX_TAGS:
            raise ValueError(f"the contact would have more than {MAX_TAGS} tags")
        before = self._state() if track else None
        if "first_name" in given:
            self.first_name, self.names_given = changes.first_name, True
        if "last_name" in given:
            self.last_name, self.names_given = changes.last_name, True
        if "display_name" in given:
            self.display_name, self.display_given = changes.display_name, True
        if "owner_id" in given:
            self.owner_id = changes.owner_id
        if "lifecycle_stage" in given:
            self.lifecycle_stage = changes.lifecycle_stage
        self.tags |= set(changes.tags)
        self.custom.update({k: v for k, v in changes.custom.items() if v is not None})
        self.identities += fresh
        if company and company.casefold() not in self._company_keys():
            self.new_companies.append(company)
        changed = before is None or self._state() != before
        self.changed |= changed
        return changed

    def final_display_name(self) -> str:
        if self.display_given:
            return self.display_name
        if self.contact is None or self.names_given:
            return display_name_of(self.first_name, self.last_name, self.identities)
        return self.contact.display_name

    def added_identities(self) -> list[Identity]:
        had = set(self.contact.identities) if self.contact else set()
        return [i for i in self.identities if i not in had]

    def _company_keys(self) -> set[str]:
        known = {c.name.casefold() for c in self.contact.companies} if self.contact else set()
        return known | {name.casefold() for name in self.new_companies}

    def _state(self) -> tuple[Any, ...]:
        return (self.first_name, self.last_name, self.display_name, self.owner_id, self.lifecycle_stage,
                sorted(self.tags), dict(self.custom), len(self.identities), len(self.new_companies))


@dataclass
class BatchPlan:
    drafts: list[Draft] = field(default_factory=list)  # each contact to create or update, once
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    error_rows: int = 0
    errors: list[RowError] = field(default_factory=list)

    def report(self, row_no: int, errors: Sequence[tuple[str, str]]) -> None:
        """The row's entries in the error report: one per column, messages joined."""
        by_field: dict[str, list[str]] = {}
        for name, message in errors:
            by_field.setdefault(name, []).append(message)
        self.errors += [RowError(row_no, name, "; ".join(m)) for name, m in by_field.items()]
        self.error_rows += 1

    def fail(self, row: ParsedRow, identity: Identity | None, message: str) -> None:
        self.failed += 1
        self.report(row.row_no, [(row.columns.get(identity.kind, "") if identity else "", message)])


def plan_batch(rows: Sequence[ParsedRow], mode: OnDuplicate, owners: dict[Identity, UUID],
               current: dict[UUID, Contact], suppressed: set[Identity]) -> BatchPlan:
    """``owners``: the contact each known identity belongs to; ``current``: the live contacts
    among them (merged-away and erased ones are missing)."""
    plan = BatchPlan()
    claimed: dict[Identity, Draft] = {}
    existing: dict[UUID, Draft] = {}
    for row in rows:
        if row.changes is None:
            plan.failed += 1
            plan.report(row.row_no, [(e.field, e.message) for e in row.errors])
            continue
        identities = row.identities
        blocked = [i for i in identities if i in suppressed]
        if blocked:
            plan.skipped += 1
            plan.report(row.row_no, [(row.columns.get(blocked[0].kind, ""), SUPPRESSED)])
            continue
        targets: dict[UUID | int, tuple[Identity, Draft | UUID]] = {}
        for identity in identities:
            target: Draft | UUID | None = claimed.get(identity) or owners.get(identity)
            if isinstance(target, UUID) and target in existing:
                target = existing[target]
            if target is not None:
                targets.setdefault(target if isinstance(target, UUID) else id(target), (identity, target))
        if not targets:
            _apply(plan, row, Draft(None, row.row_no), claimed, new=True)
        elif mode is OnDuplicate.SKIP:
            plan.skipped += 1
        elif mode is OnDuplicate.CREATE:
            identity, target = next(iter(targets.values()))
            plan.fail(row, identity, _taken(identity, target))
        elif len(targets) > 1:
            plan.fail(row, None, "the row's identities belong to different contacts: "
                      + ", ".join(_name(t) for _, t in targets.values()))
        else:
            identity, target = next(iter(targets.values()))
            if isinstance(target, UUID):
                contact = current.get(target)
                if contact is None or contact.erased:
                    plan.fail(row, identity, f"{identity_label(identity)} of this row belongs to contact"
                                             f" {target}, which was merged or erased")
                    continue
                existing[target] = Draft.of(contact, row.row_no)
                target = existing[target]
            _apply(plan, row, target, claimed, new=False)
    return plan


def _apply(plan: BatchPlan, row: ParsedRow, draft: Draft, claimed: dict[Identity, Draft], *, new: bool
           ) -> None:
    assert row.changes is not None
    was_changed = draft.changed
    try:
        changed = draft.apply(row.changes, row.identities, row.company, track=not new)
    except ValueError as exc:
        plan.fail(row, None, str(exc))
        return
    for identity in row.identities:
        claimed[identity] = draft
    if new:
        plan.created += 1
        plan.drafts.append(draft)
    elif changed:
        plan.updated += 1
        if not was_changed and draft.contact is not None:
            plan.drafts.append(draft)
    else:
        plan.skipped += 1  # nothing to change: the contact already says what the row says


def _taken(identity: Identity, target: Draft | UUID) -> str:
    if isinstance(target, Draft) and target.contact is None:
        return f"{identity_label(identity)} of this row is already in row {target.first_row} of this file"
    return f"{identity_label(identity)} of this row already belongs to contact {_name(target)}"


def _name(target: Draft | UUID) -> str:
    if isinstance(target, UUID):
        return str(target)
    return str(target.contact.id) if target.contact else f"the contact of row {target.first_row}"
