"""The data policy of the public topics: which internal events go public, and what of them.

Each public event type is declared here with its public topic and, for every field of its
protobuf payload (dotted paths for nested messages), one rule:

- ``publish``: the value as it is (protobuf's JSON mapping, proto field names);
- ``hash``: ``HMAC-SHA256(workspace hash key, trimmed and lower-cased value)`` in hex, so a
  partner can match a value it already knows without the platform telling it;
- ``omit``: never leaves the platform.

It is an allow-list: a field that is not declared is never published, and a unit test walks
every declared payload's descriptor and fails on a field without a rule, so a new proto field
stays private until someone decides about it here. A nested message field needs no rule of
its own when its children have rules (it is published as an object of theirs); ``omit`` drops
it whole.

An event about one entity (a deal, a ticket, a contact...) has that entity's published fields
at the top level of its public payload, beside the event's own fields (``changed``,
``reason``...): subscription filters work on top-level fields, so ``{"pipeline_id": ...}``
selects ``deal.won`` events of one pipeline.

Pure: no I/O.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from crm.campaigns.v1 import events_pb2 as campaigns
from crm.contacts.v1 import events_pb2 as contacts
from crm.ingest.v1 import events_pb2 as interactions
from crm.pipeline.v1 import events_pb2 as pipeline
from crm.ticketing.v1 import events_pb2 as tickets
from crmkit.topics import (
    CAMPAIGNS,
    CONTACTS,
    INTERACTIONS,
    PIPELINE,
    PUBLIC_CAMPAIGNS,
    PUBLIC_CONTACTS,
    PUBLIC_INTERACTIONS,
    PUBLIC_PIPELINE,
    PUBLIC_TICKETS,
    TICKETS,
)

CONTACT_ERASED = "crm.contacts.contact.erased.v1"
CONTACT_MERGED = "crm.contacts.contact.merged.v1"
ERASURE_SOURCE = "/crm/partners"

# Internal topic -> public topic.
PUBLIC_TOPIC: dict[str, str] = {
    CONTACTS: PUBLIC_CONTACTS,
    TICKETS: PUBLIC_TICKETS,
    PIPELINE: PUBLIC_PIPELINE,
    CAMPAIGNS: PUBLIC_CAMPAIGNS,
    INTERACTIONS: PUBLIC_INTERACTIONS,
}


def domain_of(public_topic: str) -> str:
    """``crm.public.pipeline.v1`` -> ``pipeline``: the name a workspace opts in to."""
    return public_topic.split(".")[2]


DOMAINS: tuple[str, ...] = tuple(domain_of(topic) for topic in PUBLIC_TOPIC.values())

# Well-known types that JSON renders as one value: they are leaves, ruled as a whole.
_LEAF_MESSAGES = frozenset({
    "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.Struct",
    "google.protobuf.Value", "google.protobuf.ListValue",
})


class Rule(StrEnum):
    PUBLISH = "publish"
    HASH = "hash"
    OMIT = "omit"


class PolicyError(ValueError):
    """A payload the policy cannot project: not the declared message, or another workspace's."""


@dataclass(frozen=True)
class EventPolicy:
    type: str
    internal_topic: str
    message: builtins.type[Message]
    rules: Mapping[str, Rule]
    summary: str
    # The entity field whose published fields go to the top level of the public payload.
    entity: str | None = None
    # Paths (published or not) that hold ids of the people the event is about, besides every
    # field named ``contact_id``.
    contact_paths: tuple[str, ...] = ()
    description: str = ""

    @property
    def descriptor(self) -> Descriptor:
        return cast(Descriptor, self.message.DESCRIPTOR)

    @property
    def topic(self) -> str:
        return PUBLIC_TOPIC[self.internal_topic]

    @property
    def domain(self) -> str:
        return domain_of(self.topic)


@dataclass
class _Builder:
    """Collects rules: ``p`` publish, ``h`` hash, ``o`` omit; paths prefixed by ``at``."""

    rules: dict[str, Rule] = field(default_factory=dict)

    def add(self, rule: Rule, paths: str, at: str = "") -> _Builder:
        for path in paths.split():
            self.rules[f"{at}.{path}" if at else path] = rule
        return self

    def p(self, paths: str, at: str = "") -> _Builder:
        return self.add(Rule.PUBLISH, paths, at)

    def h(self, paths: str, at: str = "") -> _Builder:
        return self.add(Rule.HASH, paths, at)

    def o(self, paths: str, at: str = "") -> _Builder:
        return self.add(Rule.OMIT, paths, at)

    def include(self, other: _Builder, at: str) -> _Builder:
        for path, rule in other.rules.items():
            self.rules[f"{at}.{path}" if at else path] = rule
        return self


def _rules() -> _Builder:
    return _Builder()


# -- Shared entity rules ------------------------------------------------------------------------

_CONTACT = (_rules().p("id workspace_id created_at last_seen_at lifecycle_stage tags updated_at version")
            .h("display_name first_name last_name owner_id")
            .p("kind", at="identities").h("value", at="identities")
            .p("company_id name role", at="companies")
            # Custom fields may hold anything about the person; consents travel on their own event.
            .o("custom_fields consents"))
_COMPANY = _rules().p("id workspace_id name domains industry size version").o("custom_fields")
_DEAL = (_rules().p("id workspace_id pipeline_id stage_id amount_minor currency expected_close_date "
                    "contact_id company_id status close_reason_id closed_at stage_entered_at tags "
                    "version created_at updated_at probability")
         .h("owner_id")
         # Titles and notes are free text, often naming people.
         .o("title close_note custom_fields")
         .p("contact_id role", at="participants")
         .p("product quantity unit_price_minor discount_minor", at="line_items"))
_ACTIVITY = (_rules().p("id workspace_id kind deal_id contact_id due_at completed_at interaction_id version "
                        "created_at updated_at")
             .h("owner_id completed_by").o("subject"))
_TICKET = _rules().p("id workspace_id contact_id channel status created_at message_count").o("subject")
_TICKET_FIELDS = (_rules().p("priority type tags version updated_at solved_at team_id").h("assignee")
                  .o("custom_fields"))
_SLA_ALERT = _rules().p("ticket_id workspace_id contact_id policy_id target cycle due_at fired_at lag_ms key")
_INTERACTION = (_rules().p("id workspace_id contact_id channel direction occurred_at received_at kind "
                           "has_html outbound_id")
                .p("kind", at="sender").h("value", at="sender")
                .p("kind", at="recipients").h("value", at="recipients")
                # Bodies, threading headers, names, files and provider facts stay inside.
                .o("subject text sender_name quoted_text thread media attachments metadata order"))
_CAMPAIGN_MESSAGE = _rules().p("workspace_id contact_id campaign_id message_id at")


def _declare() -> dict[str, EventPolicy]:
    declared: list[EventPolicy] = []

    def event(type_: str, topic: str, message: type[Message], rules: _Builder, summary: str, *,
              entity: str | None = None, contact_paths: tuple[str, ...] = (), description: str = "") -> None:
        declared.append(EventPolicy(type_, topic, message, dict(rules.rules), summary, entity,
                                    contact_paths, description))

    # contacts
    event("crm.contacts.contact.created.v1", CONTACTS, contacts.ContactCreated,
          _rules().include(_CONTACT, "contact"), "A contact was created.", entity="contact",
          contact_paths=("contact.id",))
    event("crm.contacts.contact.updated.v1", CONTACTS, contacts.ContactUpdated,
          _rules().include(_CONTACT, "contact").p("changed"),
          "A contact changed; `changed` names the fields.",
          entity="contact", contact_paths=("contact.id",))
    event(CONTACT_MERGED, CONTACTS, contacts.ContactMerged, _rules().p("workspace_id survivor_id loser_id"),
          "Two contacts became one: forget `loser_id`, its events now belong to `survivor_id`.",
          contact_paths=("survivor_id", "loser_id"))
    event(CONTACT_ERASED, CONTACTS, contacts.ContactErased, _rules().p("workspace_id contact_id"),
          "A person was erased: delete everything you hold about `contact_id`.",
          description="Published by the partners service itself on every public topic the workspace "
                      "publishes, keyed like the person's events; its payload is `contact_id` and "
                      "`erased_at`. Every stored public event about the person is deleted from the "
                      "replay store before it is sent, so a replay never brings them back.")
    event("crm.contacts.consent.changed.v1", CONTACTS, contacts.ConsentChanged,
          _rules().p("workspace_id contact_id").p("channel purpose status source at", at="consent"),
          "A contact's consent for a channel and purpose changed.", entity="consent")
    for verb in ("created", "updated", "deleted"):
        event(f"crm.contacts.company.{verb}.v1", CONTACTS, contacts.CompanyChanged,
              _rules().include(_COMPANY, "company"), f"A company was {verb}.", entity="company")
    event("crm.contacts.segment.membership_changed.v1", CONTACTS, contacts.SegmentMembershipChanged,
          _rules().p("workspace_id segment_id contact_id member"),
          "A contact joined (`member` true) or left a segment.")

    # tickets
    def ticket_event(verb: str, message: type[Message], rules: _Builder, summary: str) -> None:
        event(f"crm.tickets.ticket.{verb}.v1", TICKETS, message, rules.include(_TICKET, "ticket"), summary,
              entity="ticket")

    ticket_event("created", tickets.TicketCreated, _rules().p("interaction_id follow_up_of"),
                 "A ticket was opened.")
    ticket_event("updated", tickets.TicketUpdated,
                 _rules().include(_TICKET_FIELDS, "fields").p("changed").h("actor"),
                 "A ticket changed; `changed` names the fields.")
    ticket_event("solved", tickets.TicketSolved, _rules().include(_TICKET_FIELDS, "fields").h("actor"),
                 "A ticket was solved.")
    ticket_event("reopened", tickets.TicketReopened,
                 _rules().include(_TICKET_FIELDS, "fields").h("actor").p("interaction_id"),
                 "A solved ticket was reopened.")
    ticket_event("assigned", tickets.TicketAssigned,
                 _rules().include(_TICKET_FIELDS, "fields")
                 .p("team_id previous_team_id queue_id reason").h("assignee previous_assignee actor"),
                 "A ticket's team or agent changed.")
    event("crm.tickets.sla.warning.v1", TICKETS, tickets.SlaWarning, _rules().include(_SLA_ALERT, "alert"),
          "A ticket's SLA clock reached its warning threshold.", entity="alert")
    event("crm.tickets.sla.breached.v1", TICKETS, tickets.SlaBreached, _rules().include(_SLA_ALERT, "alert"),
          "A ticket's SLA clock passed its deadline.", entity="alert")
    event("crm.tickets.csat.rated.v1", TICKETS, tickets.CsatRated,
          _rules().p("survey_id workspace_id ticket_id contact_id channel team_id rating rated_at")
          .h("agent").o("comment"),
          "A requester rated a solved ticket (1-5).")

    # pipeline
    def deal_event(verb: str, message: type[Message], rules: _Builder, summary: str) -> None:
        event(f"crm.pipeline.deal.{verb}.v1", PIPELINE, message, rules.include(_DEAL, "deal"), summary,
              entity="deal", contact_paths=("deal.participants.contact_id",))

    deal_event("created", pipeline.DealCreated, _rules().h("actor"), "A deal was created.")
    deal_event("updated", pipeline.DealUpdated, _rules().p("changed").h("actor"),
               "A deal changed; `changed` names the fields.")
    deal_event("stage_changed", pipeline.DealStageChanged,
               _rules().p("from_stage_id to_stage_id seconds_in_from").h("actor"),
               "A deal entered another stage.")
    for verb, closed in (("won", pipeline.DealWon), ("lost", pipeline.DealLost)):
        deal_event(verb, closed, _rules().p("reason_id reason").h("actor").o("note"), f"A deal was {verb}.")
    event("crm.pipeline.activity.created.v1", PIPELINE, pipeline.ActivityCreated,
          _rules().include(_ACTIVITY, "activity").h("actor"),
          "An activity (call, meeting, task...) was created.",
          entity="activity")
    event("crm.pipeline.activity.completed.v1", PIPELINE, pipeline.ActivityCompleted,
          _rules().include(_ACTIVITY, "activity").h("actor"), "An activity was completed.", entity="activity")
    event("crm.pipeline.lead.score_changed.v1", PIPELINE, pipeline.LeadScoreChanged,
          _rules().p("workspace_id contact_id old_score new_score model_version crossed_thresholds "
                     "computed_at")
          .p("rule_id kind points event_count", at="top_contributions"),
          "A contact's lead score moved.")

    # campaigns
    for verb, message in (("sent", campaigns.MessageSent), ("delivered", campaigns.MessageDelivered),
                          ("opened", campaigns.MessageOpened)):
        event(f"crm.campaigns.message.{verb}.v1", CAMPAIGNS, message, _rules().include(_CAMPAIGN_MESSAGE, ""),
              f"A campaign message was {verb}.")
    event("crm.campaigns.message.clicked.v1", CAMPAIGNS, campaigns.MessageClicked,
          _rules().include(_CAMPAIGN_MESSAGE, "").o("url"),
          "A recipient followed a tracked link (the link itself is not published).")
    event("crm.campaigns.message.bounced.v1", CAMPAIGNS, campaigns.MessageBounced,
          _rules().include(_CAMPAIGN_MESSAGE, "").o("error"), "A campaign message bounced.")
    event("crm.campaigns.recipient.unsubscribed.v1", CAMPAIGNS, campaigns.RecipientUnsubscribed,
          _rules().p("workspace_id contact_id channel purpose campaign_id method at"),
          "A recipient unsubscribed.")
    event("crm.campaigns.campaign.started.v1", CAMPAIGNS, campaigns.CampaignStarted,
          _rules().p("workspace_id campaign_id at"), "A campaign started sending.")
    event("crm.campaigns.campaign.completed.v1", CAMPAIGNS, campaigns.CampaignCompleted,
          _rules().p("workspace_id campaign_id at queued suppressed"),
          "Every recipient of a campaign was handled.")

    # interactions
    event("crm.interactions.interaction.recorded.v1", INTERACTIONS, interactions.InteractionRecorded,
          _rules().include(_INTERACTION, "interaction"),
          "A message on any channel was recorded (without its content).", entity="interaction")
    return {policy.type: policy for policy in declared}


POLICIES: dict[str, EventPolicy] = _declare()


def policies_of(internal_topic: str) -> dict[str, EventPolicy]:
    return {t: p for t, p in POLICIES.items() if p.internal_topic == internal_topic}


# -- Walking a payload's descriptor -----------------------------------------------------------

def message_of(f: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    assert f.message_type is not None, f.full_name
    return f.message_type


def is_nested(f: FieldDescriptor) -> bool:
    """A message field the policy rules field by field (not a map, not a well-known leaf)."""
    return (f.type == FieldDescriptor.TYPE_MESSAGE and not message_of(f).GetOptions().map_entry
            and message_of(f).full_name not in _LEAF_MESSAGES)


def is_repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def walk(descriptor: Descriptor, prefix: str = "") -> Iterator[tuple[str, FieldDescriptor]]:
    """Every field path of a message, nested messages' fields included (and the nested field
    itself first)."""
    for f in descriptor.fields:
        path = f"{prefix}{f.name}"
        yield path, f
        if is_nested(f):
            yield from walk(message_of(f), f"{path}.")


def problems(policy: EventPolicy) -> list[str]:
    """What is wrong with a declaration: fields without a rule, rules for fields that do not
    exist, and rules a field cannot have. Empty when the declaration is sound."""
    found: list[str] = []
    paths = dict(walk(policy.descriptor))
    for path in policy.rules:
        if path not in paths:
            found.append(f"{path}: no such field")
    for path, f in paths.items():
        if any(path.startswith(f"{omitted}.") for omitted, rule in policy.rules.items() if rule is Rule.OMIT):
            continue  # inside an omitted message
        rule = policy.rules.get(path)
        if is_nested(f):
            if rule is Rule.HASH:
                found.append(f"{path}: a message cannot be hashed")
            elif rule is None and not any(p.startswith(f"{path}.") for p in policy.rules):
                found.append(f"{path}: not classified")
        elif rule is None:
            found.append(f"{path}: not classified")
        elif rule is Rule.HASH and f.type != FieldDescriptor.TYPE_STRING:
            found.append(f"{path}: only strings can be hashed")
    if policy.entity is not None:
        entity = paths.get(policy.entity)
        if entity is None or not is_nested(entity) or is_repeated(entity):
            found.append(f"{policy.entity}: the entity must be a singular message field")
        else:
            own = {f.name for f in policy.descriptor.fields} - {policy.entity}
            found.extend(f"{policy.entity}.{f.name}: collides with the event's own field"
                         for f in message_of(entity).fields if f.name in own)
    return found


# -- Projecting one payload -------------------------------------------------------------------

def hash_value(key: bytes, value: str) -> str:
    """The published form of a hashed field: keyed, so it is stable within the workspace and
    means nothing elsewhere; normalised, so ``Ann@Example.com `` and ``ann@example.com`` match.
    An empty value stays empty (it says nothing about anyone)."""
    normalised = value.strip().lower()
    if not normalised:
        return ""
    return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()


def _apply(descriptor: Descriptor, value: dict[str, Any], rules: Mapping[str, Rule], prefix: str,
           key: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in descriptor.fields:
        if f.name not in value:
            continue
        path = f"{prefix}{f.name}"
        rule = rules.get(path)
        raw = value[f.name]
        if rule is Rule.OMIT:
            continue
        if is_nested(f):
            if rule is None and not any(p.startswith(f"{path}.") for p in rules):
                continue
            out[f.name] = ([_apply(message_of(f), item, rules, f"{path}.", key) for item in raw]
                           if is_repeated(f) else _apply(message_of(f), raw, rules, f"{path}.", key))
        elif rule is Rule.PUBLISH:
            out[f.name] = raw
        elif rule is Rule.HASH:
            out[f.name] = [hash_value(key, v) for v in raw] if is_repeated(f) else hash_value(key, raw)
    return out


def _contact_ids(descriptor: Descriptor, value: Any, extra: tuple[str, ...], prefix: str = ""
                 ) -> Iterator[str]:
    for f in descriptor.fields:
        if f.name not in value:
            continue
        path = f"{prefix}{f.name}"
        items = value[f.name] if is_repeated(f) else [value[f.name]]
        if is_nested(f):
            for item in items:
                yield from _contact_ids(message_of(f), item, extra, f"{path}.")
        elif f.type == FieldDescriptor.TYPE_STRING and (f.name == "contact_id" or path in extra):
            yield from (item for item in items if item)


def _workspaces(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "workspace_id" and isinstance(item, str) and item:
                yield item
            else:
                yield from _workspaces(item)
    elif isinstance(value, list):
        for item in value:
            yield from _workspaces(item)


@dataclass(frozen=True)
class Projected:
    data: dict[str, Any]
    contact_ids: tuple[str, ...]


def project(policy: EventPolicy, payload: bytes, workspace_id: str, hash_key: bytes) -> Projected:
    """The public payload of one internal event, and the people it is about. Raises
    PolicyError for a payload that is not the declared message or names another workspace."""
    message = policy.message()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise PolicyError(f"the payload is not a {policy.descriptor.full_name}") from exc
    full = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    if any(found != workspace_id for found in _workspaces(full)):
        raise PolicyError("the payload's workspace differs from the envelope's")
    data = _apply(policy.descriptor, full, policy.rules, "", hash_key)
    if policy.entity is not None:
        data = {**data.pop(policy.entity, {}), **data}
    people = tuple(dict.fromkeys(_contact_ids(policy.descriptor, full, policy.contact_paths)))
    return Projected(data, people)


def published_fields(event_type: str) -> frozenset[str]:
    """The top-level fields of an event type's public payload (what a filter may name);
    empty for an unknown type."""
    policy = POLICIES.get(event_type)
    if policy is None:
        return frozenset()
    if policy.type == CONTACT_ERASED:
        return frozenset({"contact_id", "erased_at"})
    names: set[str] = set()
    for f in policy.descriptor.fields:
        if f.name == policy.entity:
            names |= {c.name for c in message_of(f).fields if _kept(policy, f"{f.name}.{c.name}", c)}
        elif _kept(policy, f.name, f):
            names.add(f.name)
    return frozenset(names)


def _kept(policy: EventPolicy, path: str, f: FieldDescriptor) -> bool:
    rule = policy.rules.get(path)
    if is_nested(f):
        return rule is not Rule.OMIT and any(p.startswith(f"{path}.") for p in policy.rules)
    return rule in (Rule.PUBLISH, Rule.HASH)


def erasure_data(contact_id: str, erased_at: str) -> dict[str, Any]:
    """The public payload of ``contact.erased``: who, and when."""
    return {"contact_id": contact_id, "erased_at": erased_at}
