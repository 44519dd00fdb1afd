"""Assignment's pure rules: which queue routes a ticket, who can take it, round-robin and
least-loaded choice, and the checks of agent, team and queue writes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast
from uuid import UUID, uuid4

import pytest

from crm.contacts.v1 import contacts_pb2
from crm_ticketing.domain.assignment import (
    Agent,
    Availability,
    Candidate,
    ContactRule,
    Queue,
    Rules,
    Strategy,
    agent_values,
    can_take,
    choose,
    first_matching,
    matches,
    queue_values,
    team_values,
)
from crm_ticketing.domain.business_hours import BusinessCalendar
from crm_ticketing.domain.errors import InvalidFields
from crm_ticketing.domain.model import Ticket, TicketPriority, TicketStatus
from crm_ticketing.domain.transitions import parse_changes
from crm_ticketing.service.assignment import Assignment
from crmkit.contacts import ContactsClient
from crmkit.postgres import PgDatabase

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday
TEAM = uuid4()


def ticket(**fields: object) -> Ticket:
    base = Ticket(id=uuid4(), workspace_id="ws", contact_id=uuid4(), channel="email", subject="Help",
                  status=TicketStatus.NEW, message_count=1, created_at=NOW)
    return replace(base, **fields)  # type: ignore[arg-type]


def agent(agent_id: str, *, capacity: int = 5, skills: tuple[str, ...] = (),
          availability: Availability = Availability.AVAILABLE, hours: BusinessCalendar | None = None,
          last: datetime | None = None, active: bool = True) -> Agent:
    return Agent(workspace_id="ws", id=agent_id, display_name=agent_id, skills=skills, capacity=capacity,
                 working_hours=hours, availability=availability, active=active, last_assigned_at=last)


def queue(name: str, position: int, rules: Rules = Rules()) -> Queue:
    return Queue(id=UUID(int=position + 1), workspace_id="ws", name=name, team_id=TEAM,
                 strategy=Strategy.ROUND_ROBIN, position=position, rules=rules)


def test_every_rule_must_hold_and_any_listed_value_will_do() -> None:
    rules = Rules(channels=("email", "chat"), tags=("vip", "refund"), priorities=(TicketPriority.HIGH,))
    assert matches(rules, ticket(tags=("refund",), priority=TicketPriority.HIGH), None)
    assert not matches(rules, ticket(tags=("refund",)), None)  # normal priority
    assert not matches(rules, ticket(channel="whatsapp", tags=("vip",), priority=TicketPriority.HIGH), None)
    assert not matches(rules, ticket(tags=("other",), priority=TicketPriority.HIGH), None)
    assert matches(Rules(), ticket(), None)  # no rules: every ticket


def test_language_and_contact_rules_read_the_contact_and_never_match_without_it() -> None:
    rules = Rules(languages=("de",), contact=(ContactRule("plan", "enterprise"),))
    assert matches(rules, ticket(), {"language": "de-AT", "plan": "enterprise"})
    assert not matches(rules, ticket(), {"language": "den", "plan": "enterprise"})
    assert not matches(rules, ticket(), {"language": "de", "plan": "free"})
    assert not matches(rules, ticket(), None)
    assert rules.needs_contact
    assert not Rules(tags=("x",)).needs_contact


def test_the_first_matching_queue_by_position_routes() -> None:
    vip = queue("vip", 1, Rules(tags=("vip",)))
    german = queue("german", 0, Rules(languages=("de",)))
    rest = queue("rest", 5)
    assert first_matching([rest, vip, german], ticket(tags=("vip",)), {"language": "de"}) == german
    # Contacts did not answer: the queues that need the contact are skipped.
    assert first_matching([rest, vip, german], ticket(tags=("vip",)), None) == vip
    assert first_matching([vip, german], ticket(), {"language": "fr"}) is None


def test_an_agent_takes_tickets_only_when_available_skilled_at_work_and_under_capacity() -> None:
    weekdays = BusinessCalendar.from_dict({"zone": "Europe/Berlin", "week": {
        d: [{"start": "09:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}})
    able = agent("a", capacity=2, skills=("billing", "de"), hours=weekdays)
    assert can_take(Candidate(able, 1), ["billing"], NOW)
    assert not can_take(Candidate(able, 2), ["billing"], NOW)  # full
    assert not can_take(Candidate(able, 0), ["billing", "fr"], NOW)  # a skill missing
    assert not can_take(Candidate(able, 0), [], datetime(2026, 11, 24, 17, 30, tzinfo=UTC))  # 18:30 in Berlin
    assert not can_take(Candidate(replace(able, availability=Availability.AWAY), 0), [], NOW)
    assert not can_take(Candidate(replace(able, active=False), 0), [], NOW)


def test_round_robin_goes_to_the_next_able_agent_after_the_last_one_and_wraps() -> None:
    team = [Candidate(agent("b"), 0), Candidate(agent("a"), 0), Candidate(agent("c", capacity=0), 0)]
    picks = []
    cursor = None
    for _ in range(4):
        chosen = choose(Strategy.ROUND_ROBIN, team, [], NOW, cursor)
        assert chosen is not None
        picks.append(chosen.id)
        cursor = chosen.id
    assert picks == ["a", "b", "a", "b"]  # c has no capacity
    # The last agent left the team: the next one after it by id.
    assert choose(Strategy.ROUND_ROBIN, team, [], NOW, "ab") == agent("b")


def test_load_balanced_takes_the_least_loaded_then_the_longest_waiting() -> None:
    earlier, later = datetime(2026, 11, 24, 8, tzinfo=UTC), datetime(2026, 11, 24, 9, tzinfo=UTC)
    team = [Candidate(agent("a", last=earlier), 3), Candidate(agent("b", last=later), 1),
            Candidate(agent("c", last=earlier), 1), Candidate(agent("d"), 5)]
    chosen = choose(Strategy.LOAD_BALANCED, team, [], NOW)
    assert chosen is not None
    assert chosen.id == "c"
    never = [Candidate(agent("x", last=earlier), 0), Candidate(agent("y"), 0)]
    chosen = choose(Strategy.LOAD_BALANCED, never, [], NOW)
    assert chosen is not None
    assert chosen.id == "y"


def test_nobody_able_means_no_choice() -> None:
    team = [Candidate(agent("a", capacity=1), 1), Candidate(agent("b", availability=Availability.OFFLINE), 0)]
    assert choose(Strategy.LOAD_BALANCED, team, [], NOW) is None
    assert choose(Strategy.ROUND_ROBIN, team, [], NOW, None) is None


def test_load_balanced_fills_agents_evenly_to_capacity() -> None:
    held = {"a": 0, "b": 0, "c": 0}
    for _ in range(30):
        team = [Candidate(agent(k, capacity=10), n) for k, n in held.items()]
        chosen = choose(Strategy.LOAD_BALANCED, team, [], NOW)
        assert chosen is not None
        held[chosen.id] += 1
    assert held == {"a": 10, "b": 10, "c": 10}
    assert choose(Strategy.LOAD_BALANCED, [Candidate(agent(k, capacity=10), n) for k, n in held.items()],
                  [], NOW) is None


def test_agent_writes_name_every_bad_field() -> None:
    values = agent_values({"capacity": 3, "skills": ["Billing", "billing", "de"], "availability": "away",
                           "working_hours": {"zone": "UTC",
                                             "week": {"mon": [{"start": "09:00", "end": "17:00"}]}}})
    assert values["skills"] == ("billing", "de")
    assert values["availability"] is Availability.AWAY
    assert values["working_hours"] is not None
    with pytest.raises(InvalidFields) as caught:
        agent_values({"capacity": -1, "skills": "x", "availability": "busy",
                      "working_hours": {"zone": "Mars/Base"}, "colour": "red"})
    fields = {e.field for e in caught.value.errors}
    assert fields == {"capacity", "skills", "availability", "working_hours", "colour"}
    with pytest.raises(InvalidFields) as caught:
        agent_values({})
    assert [e.field for e in caught.value.errors] == ["capacity"]


def test_team_and_queue_writes_are_checked() -> None:
    assert team_values({"name": " Tier 1 ", "members": ["a", "b", "a"]}, creating=True) == {
        "name": "Tier 1", "members": ("a", "b")}
    with pytest.raises(InvalidFields) as caught:
        team_values({"members": "a"}, creating=True)
    assert {e.field for e in caught.value.errors} == {"name", "members"}
    values = queue_values({"name": "VIP", "team_id": str(TEAM), "strategy": "load_balanced",
                           "rules": {"tags": ["VIP"], "priorities": ["urgent"],
                                     "contact": [{"attribute": "plan", "equals": "enterprise"}]}},
                          creating=True)
    assert values["strategy"] is Strategy.LOAD_BALANCED
    assert values["position"] == 0
    assert values["rules"] == Rules(tags=("vip",), priorities=(TicketPriority.URGENT,),
                                    contact=(ContactRule("plan", "enterprise"),))
    with pytest.raises(InvalidFields) as caught:
        queue_values({"name": "", "team_id": "nope", "strategy": "random", "position": -1,
                      "rules": {"priorities": ["soon"], "contact": [{"attribute": "plan"}], "colour": []}},
                     creating=True)
    assert {e.field for e in caught.value.errors} == {
        "name", "team_id", "strategy", "position", "rules.priorities", "rules.contact[0]", "rules.colour"}


def test_a_patch_takes_an_assignee_and_a_team_or_null() -> None:
    team = uuid4()
    assert parse_changes({"assignee": "agent-1", "team_id": str(team)}) == {
        "assignee": "agent-1", "team_id": team}
    assert parse_changes({"assignee": None, "team_id": None}) == {"assignee": None, "team_id": None}
    with pytest.raises(InvalidFields) as caught:
        parse_changes({"assignee": 7, "team_id": "x"})
    assert {e.field for e in caught.value.errors} == {"assignee", "team_id"}


class FakeContacts:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    async def get_contact(self, workspace_id: str, contact_id: str) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer == "slow":
            await asyncio.sleep(10)
        return self.answer


async def test_contact_attributes_are_strings_and_an_unreachable_contacts_is_no_contact() -> None:
    contact = contacts_pb2.Contact(lifecycle_stage="customer", tags=["a", "b"])
    contact.custom_fields.update({"plan": "enterprise", "seats": 12, "trial": False, "language": "de-AT"})

    def service(answer: object) -> Assignment:
        return Assignment(cast(PgDatabase, None), cast(ContactsClient, FakeContacts(answer)),
                          contact_timeout=0.05)

    assert await service(contact)._contact(ticket()) == {
        "lifecycle_stage": "customer", "owner_id": "", "tags": "a,b", "plan": "enterprise", "seats": "12",
        "trial": "false", "language": "de-AT"}
    assert await service(None)._contact(ticket()) == {}
    assert await service(ConnectionError("down"))._contact(ticket()) is None
    assert await service("slow")._contact(ticket()) is None
    assert await Assignment(cast(PgDatabase, None))._contact(ticket()) is None
