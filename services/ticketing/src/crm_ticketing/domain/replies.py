"""Agents' replies and notes, and macros: the rules, pure.

- A reply's email subject is ``Re: <subject> [#<token>]``. The token names the ticket, so a
  customer's email that lost its In-Reply-To/References (a new mail typed to the same
  address, a client that drops headers) still finds the ticket; it is the last fallback,
  never the subject alone.
- A reply answers the customer's latest Message-ID and carries the thread's chain in
  References, so it threads in the customer's mail client.
- Collisions: an agent says which message it saw last; anything someone else added after it
  refuses the write (unless forced), so two agents never answer the same question twice.
- Macros: a body template with ``{{contact.first_name}}``-style placeholders (checked when the
  macro is written) and field actions, applied with a reply in one go.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import FieldError, InvalidFields, TicketingError

# --- the ticket token ----------------------------------------------------------------------

_TOKEN_LENGTH = 16
_TOKEN = re.compile(r"\[#([A-Za-z2-7]{16})\]")
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|fw|fwd|wg)\s*:\s*)+", re.IGNORECASE)
MAX_SUBJECT = 998  # RFC 5322's line limit, as ingest keeps subjects


def ticket_token(ticket_id: UUID) -> str:
    """16 base32 characters from the random tail of the ticket's UUIDv7 (its last 80 bits):
    unique in practice, short enough for a subject, and not the guessable timestamp."""
    return base64.b32encode(ticket_id.bytes[6:]).decode()[:_TOKEN_LENGTH]


def token_key(token: str) -> str:
    """The thread key a token is recorded under (``thread_keys``)."""
    return f"token:{token.upper()}"


def token_in(subject: str) -> str | None:
    """The ticket token of a subject (the last ``[#...]`` when there are several), upper-cased."""
    found = _TOKEN.findall(subject or "")
    return found[-1].upper() if found else None


def reply_subject(subject: str, ticket_id: UUID) -> str:
    """``Re: <subject> [#token]``: one ``Re:`` however many the customer's had, the token once."""
    token = ticket_token(ticket_id)
    base = _TOKEN.sub("", subject or "")
    base = " ".join(_REPLY_PREFIX.sub("", base).split())
    tail = f" [#{token}]"
    base = base[: MAX_SUBJECT - len("Re: ") - len(tail)]
    return f"Re: {base}{tail}" if base else f"Re:{tail}"


# --- email threading of a reply --------------------------------------------------------------

MAX_REFERENCES = 20


@dataclass(frozen=True)
class EmailThreading:
    in_reply_to: str
    references: tuple[str, ...]


def email_threading(chain: Sequence[str], ours: set[str]) -> EmailThreading:
    """Threading headers of a reply. ``chain`` is every Message-ID of the ticket in the order
    ticketing learnt them (the customer's and the replies ingest sent); ``ours`` are the
    replies'. It answers the customer's latest message: In-Reply-To is that Message-ID and
    References the chain up to it, cut to the first and the last ones (RFC 5322 lets a client
    shorten it; the first and the parent are what threading needs)."""
    ids = list(dict.fromkeys(i for i in chain if i))
    parent_at = next((n for n in range(len(ids) - 1, -1, -1) if ids[n] not in ours), None)
    if parent_at is None:
        return EmailThreading("", ())
    refs = ids[: parent_at + 1]
    if len(refs) > MAX_REFERENCES:
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1):]]
    return EmailThreading(ids[parent_at], tuple(refs))


# --- collisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSummary:
    """What a collision reports about a message the agent has not seen."""

    id: str
    direction: str
    author: str
    occurred_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "direction": self.direction, "author": self.author,
                "occurred_at": self.occurred_at.isoformat()}


class Collision(TicketingError):
    """Someone else wrote in the ticket since the message the agent saw last: nothing was
    written; resend with ``force`` to write anyway."""

    def __init__(self, newer: list[MessageSummary]) -> None:
        super().__init__(f"{len(newer)} message(s) were added since the one you saw last")
        self.newer = newer


def collisions(newer: Sequence[MessageSummary], author: str) -> list[MessageSummary]:
    """The messages added after the one the agent saw that someone else wrote (the customer,
    another agent, the system). The agent's own never collide with it."""
    return [m for m in newer if m.direction == "inbound" or m.author != author]


# --- what a reply does to the ticket's status -------------------------------------------------


def status_after_message(current: str, requested: str | None, internal: bool) -> str | None:
    """The status to move to with the message, or None to leave it: the one asked for, else
    ``open`` for a public reply to a ``new`` ticket (an agent took it up). A note changes
    nothing by itself."""
    if requested is not None:
        return requested
    if not internal and current == "new":
        return "open"
    return None


# --- attachments ----------------------------------------------------------------------------

MAX_ATTACHMENTS = 20
MAX_BODY = 100_000


def parse_attachments(raw: Any) -> list[dict[str, Any]] | FieldError:
    """References to files kept elsewhere (ingest's attachments, a file store): each
    ``{"ref": "...", "filename": "...", "content_type": "...", "size": n}``, ``ref`` required.
    Never the bytes."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        return FieldError("attachments", f"a list of at most {MAX_ATTACHMENTS} references")
    found: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"ref", "filename", "content_type", "size"}:
            return FieldError("attachments", "each an object of ref, filename, content_type, size")
        ref, size = item.get("ref"), item.get("size")
        if not isinstance(ref, str) or not 1 <= len(ref) <= 500:
            return FieldError("attachments", "each needs a ref of 1-500 characters")
        if any(not isinstance(item.get(k, ""), str) or len(item.get(k, "")) > 255
               for k in ("filename", "content_type")):
            return FieldError("attachments", "filename and content_type are strings of at most 255")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            return FieldError("attachments", "size is a number of bytes")
        found.append({k: item[k] for k in ("ref", "filename", "content_type", "size") if k in item})
    return found


@dataclass(frozen=True)
class Draft:
    """An agent's message as the API takes it, checked: what to write and what was seen."""

    body: str
    internal: bool
    attachments: list[dict[str, Any]]
    status: str | None = None
    after: str | None = None
    force: bool = False


def parse_draft(raw: Mapping[str, Any]) -> Draft:
    """Check a message request; InvalidFields names every bad field. A public reply needs a
    body; its attachments cannot be sent yet (the outbound message carries none), so only
    notes take them rather than dropping them silently."""
    allowed = {"body", "internal", "status", "attachments", "after", "force"}
    errors = [FieldError(name, "not a field of a message") for name in raw if name not in allowed]
    body, internal = raw.get("body", ""), raw.get("internal", False)
    if not isinstance(internal, bool):
        errors.append(FieldError("internal", "true or false"))
        internal = False
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY:
        errors.append(FieldError("body", f"text of 1-{MAX_BODY} characters"))
        body = ""
    status = raw.get("status")
    if status is not None and not isinstance(status, str):
        errors.append(FieldError("status", "a ticket status"))
    attachments = parse_attachments(raw.get("attachments"))
    if isinstance(attachments, FieldError):
        errors.append(attachments)
        attachments = []
    elif attachments and not internal:
        errors.append(FieldError("attachments", "only internal notes take attachments for now: "
                                                "replies cannot carry files yet"))
    after, force = raw.get("after"), raw.get("force", False)
    if after is not None and (not isinstance(after, str) or not 1 <= len(after) <= 200):
        errors.append(FieldError("after", "the id of the last message seen"))
    if not isinstance(force, bool):
        errors.append(FieldError("force", "true or false"))
    if errors:
        raise InvalidFields(errors)
    return Draft(body=body, internal=internal, attachments=attachments, status=status,
                 after=after, force=force)


# --- delivery status of a reply ---------------------------------------------------------------

QUEUED = "queued"
_PROGRESS = {QUEUED: 0, "sent": 1, "delivered": 2, "read": 3}
FAILED = frozenset({"failed", "bounced"})
DELIVERY_STATUSES = frozenset(_PROGRESS) | FAILED


@dataclass(frozen=True)
class SentReply:
    """Ingest sent an OutboundMessage: its id, and the Message-ID it went out with (email; the
    provider's message id elsewhere), by which the customer's answer threads."""

    workspace_id: str
    outbound_id: str
    message_id: str


@dataclass(frozen=True)
class DeliveryReport:
    """Ingest's news about an OutboundMessage ticketing asked for."""

    workspace_id: str
    outbound_id: str
    status: str
    error: str
    at: datetime | None


def next_delivery_status(current: str | None, reported: str) -> str | None:
    """The reply's delivery status after a report, or None to keep it. Reports may come out
    of order (a ``read`` before its ``sent``): a status never goes back, except that a
    failure or a bounce wins over anything (an email bounces after it was sent)."""
    if reported not in DELIVERY_STATUSES or reported == current:
        return None
    if reported in FAILED:
        return reported
    if current in FAILED:
        return None
    if _PROGRESS.get(current or QUEUED, 0) >= _PROGRESS[reported]:
        return None
    return reported


# --- macros -------------------------------------------------------------------------------------

PLACEHOLDERS: dict[str, str] = {
    "contact.first_name": "the requester's first name",
    "contact.last_name": "the requester's last name",
    "contact.name": "the requester's display name",
    "contact.email": "the requester's email address",
    "ticket.id": "the ticket's id",
    "ticket.subject": "the ticket's subject",
    "ticket.status": "the ticket's status",
    "ticket.priority": "the ticket's priority",
    "ticket.token": "the ticket's token, as in [#token]",
    "agent.name": "the replying agent",
}

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PLACEHOLDER = re.compile(r'^\s*([a-z_]+\.[a-z_]+)\s*(?:\|\s*default\(\s*"([^"{}]*)"\s*\)\s*)?$')
MAX_NAME = 200


@dataclass(frozen=True)
class Placeholder:
    name: str
    default: str


def parse_template(template: str) -> list[str | Placeholder]:
    """The template as literal text and placeholders; InvalidFields (field ``body``) naming
    each unknown or malformed placeholder. ``{{contact.first_name|default("there")}}`` falls
    back to "there" when the value is empty."""
    parts: list[str | Placeholder] = []
    bad: list[str] = []
    at = 0
    for match in _TAG.finditer(template):
        parts.append(template[at:match.start()])
        at = match.end()
        found = _PLACEHOLDER.match(match.group(1))
        if found is None:
            bad.append(f"{match.group(0)} is not a placeholder")
        elif found.group(1) not in PLACEHOLDERS:
            bad.append(f"unknown placeholder {found.group(1)} (known: {', '.join(PLACEHOLDERS)})")
        else:
            parts.append(Placeholder(found.group(1), found.group(2) or ""))
    rest = template[at:]
    if "{{" in rest or "}}" in rest:
        bad.append("an unclosed {{ or a stray }}")
    parts.append(rest)
    if bad:
        raise InvalidFields([FieldError("body", message) for message in bad])
    return [p for p in parts if p != ""]


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with each placeholder's value, else its default, else nothing."""
    return "".join(part if isinstance(part, str) else (values.get(part.name) or part.default)
                   for part in parse_template(template))


_ACTIONS = ("status", "priority", "add_tags", "remove_tags", "assignee")


@dataclass(frozen=True)
class MacroFields:
    """A macro as written: checked, with its actions kept as sent (JSON)."""

    name: str
    body: str
    internal: bool
    actions: dict[str, Any]


def parse_macro(raw: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The fields of a macro write, checked: ``name`` (1-200), ``body`` (a template; may be
    empty for a macro that only changes fields), ``internal`` (a note instead of a reply),
    ``actions``: ``status``, ``priority``, ``add_tags``, ``remove_tags``, ``assignee`` (an
    agent id, null unassigns). They are applied through the ticket's own rules (as a PATCH),
    which check them again then (a status the ticket cannot take, an unknown agent); here
    they must at least be well-formed. With ``partial``, only the fields sent. InvalidFields
    names every bad one."""
    from crm_ticketing.domain.model import TicketPriority, TicketStatus

    errors = [FieldError(name, "not a field of a macro") for name in raw
              if name not in ("name", "body", "internal", "actions")]
    values: dict[str, Any] = {}
    if "name" in raw or not partial:
        name = raw.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
            errors.append(FieldError("name", f"1-{MAX_NAME} characters"))
        else:
            values["name"] = name.strip()
    if "body" in raw or not partial:
        body = raw.get("body", "")
        if not isinstance(body, str) or len(body) > MAX_BODY:
            errors.append(FieldError("body", f"a template of at most {MAX_BODY} characters"))
        else:
            try:
                parse_template(body)
                values["body"] = body
            except InvalidFields as exc:
                errors.extend(exc.errors)
    if "internal" in raw or not partial:
        internal = raw.get("internal", False)
        if not isinstance(internal, bool):
            errors.append(FieldError("internal", "true or false"))
        else:
            values["internal"] = internal
    if "actions" in raw or not partial:
        actions = raw.get("actions") or {}
        if not isinstance(actions, dict):
            errors.append(FieldError("actions", "an object"))
        else:
            checked: dict[str, Any] = {}
            for key, value in actions.items():
                path = f"actions.{key}"
                if key not in _ACTIONS:
                    known = ", ".join(_ACTIONS)
                    errors.append(FieldError(path, f"not an action ({known})"))
                elif key == "status" and value not in {s.value for s in TicketStatus}:
                    errors.append(FieldError(path, "one of " + ", ".join(s.value for s in TicketStatus)))
                elif key == "priority" and value not in {p.value for p in TicketPriority}:
                    errors.append(FieldError(path, "one of " + ", ".join(p.value for p in TicketPriority)))
                elif key in ("add_tags", "remove_tags") and (
                        not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
                    errors.append(FieldError(path, "a list of tags"))
                elif key == "assignee" and value is not None and not isinstance(value, str):
                    errors.append(FieldError(path, "an agent id, or null to unassign"))
                else:
                    checked[key] = value
            values["actions"] = checked
    if not partial and not values.get("body", "").strip() and not values.get("actions") and not errors:
        errors.append(FieldError("body", "a macro needs a body or some actions"))
    if errors:
        raise InvalidFields(errors)
    return values


def macro_changes(actions: Mapping[str, Any], tags: Sequence[str]) -> dict[str, Any]:
    """What a macro's actions change on a ticket with ``tags``, as a PATCH body for the
    ticket's own rules (``parse_changes``): the tag set after removing and adding."""
    raw: dict[str, Any] = {k: actions[k] for k in ("status", "priority", "assignee") if k in actions}
    if "add_tags" in actions or "remove_tags" in actions:
        removed = {t.strip().lower() for t in actions.get("remove_tags", [])}
        kept = [t for t in tags if t not in removed]
        raw["tags"] = kept + [t for t in actions.get("add_tags", []) if t.strip().lower() not in removed]
    return raw


class MacroNameTaken(TicketingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"another macro is named {name!r}")
        self.name = name
