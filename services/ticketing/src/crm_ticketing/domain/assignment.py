"""Assignment's rules: agents, teams and queues as values, which queue routes a ticket, and
which agent a queue gives it to. Pure: no I/O.

- A queue's routing rules are conditions that must all hold (an empty set of rules matches
  every ticket); within one condition any listed value will do. The first matching queue by
  position routes a ticket.
- An agent can take a ticket when active, ``available``, within their working hours now,
  holding every skill the queue requires, and under capacity (their tickets that are new,
  open, pending or on hold count against it).
- Round-robin gives the ticket to the next such agent after the one who had the last ticket
  (by agent id, wrapping around); load-balanced to the one with the fewest open tickets, ties
  to the one who waited longest since their last assignment (never assigned first), then by id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from crm_ticketing.domain.business_hours import BusinessCalendar, InvalidCalendar, is_open
from crm_ticketing.domain.errors import FieldError, InvalidFields, TicketingError
from crm_ticketing.domain.model import Ticket, TicketPriority, TicketStatus

MAX_NAME = 200
MAX_SKILLS = 50
MAX_SKILL_LENGTH = 64
MAX_CAPACITY = 10_000
MAX_MEMBERS = 500
MAX_RULE_VALUES = 50
MAX_CONTACT_RULES = 20

# The tickets that count against an agent's capacity.
HELD = frozenset({TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.ON_HOLD})
# The tickets that go back to their queue when their agent leaves (goes away or offline, is
# removed from the team, or deactivated). Pending and on-hold ones wait on someone else than
# the agent, so they stay; when the customer replies they are open again and go back then.
RETURNED = frozenset({TicketStatus.NEW, TicketStatus.OPEN})


class Availability(StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LOAD_BALANCED = "load_balanced"


class Reason(StrEnum):
    """Why a ticket's assignment changed (``ticket.assigned``'s reason)."""

    ROUTED = "routed"  # a queue gave it out
    MANUAL = "manual"  # a person set it
    REASSIGNED = "reassigned"  # its agent left and it went back to its queue


class AssignmentConflict(TicketingError):
    """A write that would break the assignment's references (a team a queue still routes to)."""


@dataclass(frozen=True)
class Agent:
    workspace_id: str
    id: str
    display_name: str
    skills: tuple[str, ...]
    capacity: int
    working_hours: BusinessCalendar | None
    availability: Availability
    active: bool = True
    last_assigned_at: datetime | None = None
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Team:
    id: UUID
    workspace_id: str
    name: str
    members: tuple[str, ...]
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ContactRule:
    attribute: str
    equals: str


@dataclass(frozen=True)
class Rules:
    channels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priorities: tuple[TicketPriority, ...] = ()
    languages: tuple[str, ...] = ()
    contact: tuple[ContactRule, ...] = ()

    @property
    def needs_contact(self) -> bool:
        """Language and contact attribute rules are read from the contact."""
        return bool(self.languages or self.contact)

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "tags": list(self.tags),
                "priorities": [p.value for p in self.priorities], "languages": list(self.languages),
                "contact": [{"attribute": r.attribute, "equals": r.equals} for r in self.contact]}


@dataclass(frozen=True)
class Queue:
    id: UUID
    workspace_id: str
    name: str
    team_id: UUID
    strategy: Strategy
    required_skills: tuple[str, ...] = ()
    position: int = 0
    rules: Rules = field(default_factory=Rules)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Candidate:
    """A team member as the choice sees them: the agent and their tickets held now."""

    agent: Agent
    held: int


# -- routing ---------------------------------------------------------------------------------


def matches(rules: Rules, ticket: Ticket, contact: Mapping[str, str] | None) -> bool:
    """Whether ``ticket`` meets every rule. ``contact`` holds the contact's attributes (custom
    fields, ``lifecycle_stage``, ``language``...) as strings; None when unknown, and then a
    rule that needs it does not match."""
    if rules.channels and ticket.channel not in rules.channels:
        return False
    if rules.tags and not set(rules.tags) & set(ticket.tags):
        return False
    if rules.priorities and ticket.priority not in rules.priorities:
        return False
    if rules.needs_contact and contact is None:
        return False
    if rules.languages:
        language = (contact or {}).get("language", "").lower()
        if not any(language == lang or language.startswith(lang + "-") for lang in rules.languages):
            return False
    return all((contact or {}).get(rule.attribute) == rule.equals for rule in rules.contact)


def first_matching(queues: Sequence[Queue], ticket: Ticket, contact: Mapping[str, str] | None
                   ) -> Queue | None:
    """The first queue by position (then id) whose rules the ticket meets."""
    for queue in sorted(queues, key=lambda q: (q.position, str(q.id))):
        if matches(queue.rules, ticket, contact):
            return queue
    return None


def can_take(candidate: Candidate, required_skills: Sequence[str], now: datetime) -> bool:
    agent = candidate.agent
    return (agent.active and agent.availability is Availability.AVAILABLE
            and candidate.held < agent.capacity
            and set(required_skills) <= set(agent.skills)
            and (agent.working_hours is None or is_open(agent.working_hours, now)))


def choose(strategy: Strategy, candidates: Sequence[Candidate], required_skills: Sequence[str],
           now: datetime, cursor: str | None = None) -> Agent | None:
    """The agent the queue gives its next ticket to; None when nobody can take one.
    ``cursor`` is the agent round-robin chose last."""
    able = sorted((c for c in candidates if can_take(c, required_skills, now)), key=lambda c: c.agent.id)
    if not able:
        return None
    if strategy is Strategy.ROUND_ROBIN:
        after = [c for c in able if cursor is None or c.agent.id > cursor]
        return (after or able)[0].agent
    never = datetime.min.replace(tzinfo=now.tzinfo)
    return min(able, key=lambda c: (c.held, c.agent.last_assigned_at or never, c.agent.id)).agent


# -- parsing writes --------------------------------------------------------------------------


def _text(raw: Any, name: str, errors: list[FieldError], *, required: bool, limit: int = MAX_NAME
          ) -> str | None:
    if raw is None:
        if required:
            errors.append(FieldError(name, "required"))
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > limit:
        errors.append(FieldError(name, f"a non-empty string of at most {limit} characters"))
        return None
    return raw.strip()


def _words(raw: Any, name: str, errors: list[FieldError], limit: int = MAX_SKILLS) -> tuple[str, ...]:
    """A set of short lower-case words (skills, tags, channels, languages), in the order sent."""
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        errors.append(FieldError(name, "a list of strings"))
        return ()
    words = tuple(dict.fromkeys(v.strip().lower() for v in raw))
    if len(words) > limit or any(not w or len(w) > MAX_SKILL_LENGTH or any(c.isspace() or c == "," for c in w)
                                 for w in words):
        errors.append(FieldError(name, f"at most {limit} values, each 1-{MAX_SKILL_LENGTH} characters"
                                       " without spaces or commas"))
        return ()
    return words


def _int(raw: Any, name: str, errors: list[FieldError], low: int, high: int) -> int | None:
    if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
        errors.append(FieldError(name, f"an integer from {low} to {high}"))
        return None
    return raw


def _unknown(raw: Mapping[str, Any], known: Sequence[str], prefix: str = "") -> list[FieldError]:
    return [FieldError(prefix + name, "not a known field") for name in raw if name not in known]


_AGENT_FIELDS = ("display_name", "skills", "capacity", "working_hours", "availability")


def agent_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An agent's whole definition from a PUT: ``capacity`` (required), ``display_name``,
    ``skills``, ``working_hours`` (a calendar, or null for always) and ``availability`` (None
    when not sent: an agent's stays, a new one is offline). Raises InvalidFields naming every
    bad field."""
    errors = _unknown(raw, _AGENT_FIELDS)
    values: dict[str, Any] = {
        "display_name": _text(raw["display_name"], "display_name", errors, required=False) or ""
        if raw.get("display_name") else "",
        "skills": _words(raw.get("skills", []), "skills", errors),
        "capacity": _int(raw.get("capacity"), "capacity", errors, 0, MAX_CAPACITY),
        "working_hours": None,
        "availability": None,
    }
    if raw.get("working_hours") is not None:
        try:
            values["working_hours"] = BusinessCalendar.from_dict(raw["working_hours"])
        except InvalidCalendar as exc:
            errors += [FieldError("working_hours", problem) for problem in exc.problems]
    if "availability" in raw:
        values["availability"] = parse_availability(raw["availability"], errors)
    if errors:
        raise InvalidFields(errors)
    return values


def parse_availability(raw: Any, errors: list[FieldError] | None = None) -> Availability:
    """Raises InvalidFields when not one of the values (or adds to ``errors`` when given)."""
    try:
        return Availability(raw)
    except ValueError:
        error = FieldError("availability", "one of " + ", ".join(a.value for a in Availability))
        if errors is None:
            raise InvalidFields([error]) from None
        errors.append(error)
        return Availability.OFFLINE


_TEAM_FIELDS = ("name", "members")


def team_values(raw: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """``name`` (required on creation) and ``members`` (agent ids, the whole set)."""
    errors = _unknown(raw, _TEAM_FIELDS)
    values: dict[str, Any] = {}
    if creating or "name" in raw:
        values["name"] = _text(raw.get("name"), "name", errors, required=True)
    if "members" in raw:
        members = raw["members"]
        if (not isinstance(members, list) or not all(isinstance(m, str) and 0 < len(m) <= MAX_NAME
                                                     for m in members) or len(members) > MAX_MEMBERS):
            errors.append(FieldError("members", f"a list of at most {MAX_MEMBERS} agent ids"))
        else:
            values["members"] = tuple(dict.fromkeys(members))
    elif creating:
        values["members"] = ()
    if errors:
        raise InvalidFields(errors)
    return values


_QUEUE_FIELDS = ("name", "team_id", "strategy", "required_skills", "position", "rules")
_RULE_FIELDS = ("channels", "tags", "priorities", "languages", "contact")


def queue_values(raw: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """``name`` and ``team_id`` (required on creation), ``strategy`` (default round_robin),
    ``required_skills``, ``position`` and ``rules``."""
    errors = _unknown(raw, _QUEUE_FIELDS)
    values: dict[str, Any] = {}
    if creating or "name" in raw:
        values["name"] = _text(raw.get("name"), "name", errors, required=True)
    if creating or "team_id" in raw:
        try:
            values["team_id"] = UUID(str(raw.get("team_id")))
        except ValueError:
            errors.append(FieldError("team_id", "the id of a team"))
    if creating or "strategy" in raw:
        try:
            values["strategy"] = Strategy(raw.get("strategy", Strategy.ROUND_ROBIN))
        except ValueError:
            errors.append(FieldError("strategy", "one of " + ", ".join(s.value for s in Strategy)))
    if creating or "required_skills" in raw:
        values["required_skills"] = _words(raw.get("required_skills", []), "required_skills", errors)
    if creating or "position" in raw:
        values["position"] = _int(raw.get("position", 0), "position", errors, 0, 1_000_000)
    if creating or "rules" in raw:
        values["rules"] = parse_rules(raw.get("rules") or {}, errors)
    if errors:
        raise InvalidFields(errors)
    return values


def parse_rules(raw: Any, errors: list[FieldError]) -> Rules:
    if not isinstance(raw, Mapping):
        errors.append(FieldError("rules", "an object of " + ", ".join(_RULE_FIELDS)))
        return Rules()
    errors += _unknown(raw, _RULE_FIELDS, "rules.")
    channels = _words(raw.get("channels", []), "rules.channels", errors, MAX_RULE_VALUES)
    tags = _words(raw.get("tags", []), "rules.tags", errors, MAX_RULE_VALUES)
    languages = _words(raw.get("languages", []), "rules.languages", errors, MAX_RULE_VALUES)
    priorities: list[TicketPriority] = []
    for value in _words(raw.get("priorities", []), "rules.priorities", errors, MAX_RULE_VALUES):
        try:
            priorities.append(TicketPriority(value))
        except ValueError:
            errors.append(FieldError("rules.priorities", "each one of "
                                     + ", ".join(p.value for p in TicketPriority)))
            break
    contact: list[ContactRule] = []
    items = raw.get("contact", [])
    if not isinstance(items, list) or len(items) > MAX_CONTACT_RULES:
        errors.append(FieldError("rules.contact", f"a list of at most {MAX_CONTACT_RULES}"
                                                  " {\"attribute\": ..., \"equals\": ...}"))
        items = []
    for index, item in enumerate(items):
        if (not isinstance(item, Mapping) or set(item) != {"attribute", "equals"}
                or not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME for v in item.values())):
            errors.append(FieldError(f"rules.contact[{index}]", "{\"attribute\": name, \"equals\": value},"
                                                                " both non-empty strings"))
            continue
        contact.append(ContactRule(item["attribute"], item["equals"]))
    return Rules(channels, tags, tuple(priorities), languages, tuple(contact))


def rules_of(raw: Mapping[str, Any]) -> Rules:
    """Stored rules (written by ``parse_rules``) back to a value."""
    errors: list[FieldError] = []
    return parse_rules(raw, errors)
