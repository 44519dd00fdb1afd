"""Journeys: validation names bad steps; advancing a run through waits, conditions and effects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm_campaigns.domain.journeys import Facts, Trigger, advance, trigger_matches, validate_journey

NOW = datetime(2026, 1, 1, tzinfo=UTC)

FOLLOW_UP: dict[str, Any] = {
    "trigger": {"kind": "segment_joined", "segment_id": "seg1"},
    "start": "welcome",
    "exit_on": ["unsubscribed"],
    "steps": {
        "welcome": {"kind": "send_email", "template_id": "t1", "next": "pause"},
        "pause": {"kind": "wait", "seconds": 2, "next": "opened"},
        "opened": {"kind": "condition", "test": {"engagement": "opened"}, "then": "tag", "else": "nudge"},
        "nudge": {"kind": "send_email", "template_id": "t2"},
        "tag": {"kind": "update_contact", "add_tags": ["engaged"], "next": "tell"},
        "tell": {"kind": "notify_owner", "message": "they opened it"},
    },
}


def journey() -> Any:
    j, errors = validate_journey(FOLLOW_UP)
    assert errors == []
    assert j is not None
    return j


def test_bad_steps_are_named() -> None:
    raw = {"trigger": {"kind": "segment_joined"}, "start": "a", "exit_on": ["bored"],
           "steps": {"a": {"kind": "wait", "seconds": -1, "next": "zz"},
                     "b": {"kind": "teleport"},
                     "c": {"kind": "condition", "test": {"engagement": "liked"}, "then": "a", "else": "a"},
                     "d": {"kind": "update_contact"}}}
    j, errors = validate_journey(raw)
    assert j is None
    assert {e.field for e in errors} == {"trigger.segment_id", "steps.a.seconds", "steps.a.next",
                                         "steps.b.kind", "steps.c.test.engagement", "steps.d", "exit_on"}


def test_unreachable_steps_and_busy_loops_are_refused() -> None:
    raw = {"trigger": {"kind": "purchase"}, "start": "a",
           "steps": {"a": {"kind": "notify_owner", "message": "x", "next": "b"},
                     "b": {"kind": "condition", "test": {"tag": "vip"}, "then": "a", "else": "c"},
                     "c": {"kind": "exit"},
                     "lost": {"kind": "exit"}}}
    _, errors = validate_journey(raw)
    assert {e.field for e in errors} == {"steps.lost", "steps.a", "steps.b"}


def test_a_run_sends_then_waits() -> None:
    step = advance(journey(), "welcome", facts=Facts(), now=NOW)
    sent = [(e.kind, e.step, e.params["template_id"]) for e in step.effects]
    assert sent == [("send_email", "welcome", "t1")]
    assert step.step == "pause"
    assert step.next_at == NOW + timedelta(seconds=2)


def test_a_wait_not_yet_over_keeps_waiting() -> None:
    step = advance(journey(), "pause", facts=Facts(), now=NOW + timedelta(seconds=1), waiting_since=NOW)
    assert step.step == "pause"
    assert step.effects == ()
    assert step.next_at == NOW + timedelta(seconds=2)


def test_after_the_wait_no_open_sends_the_follow_up() -> None:
    step = advance(journey(), "pause", facts=Facts(), now=NOW + timedelta(seconds=2), waiting_since=NOW)
    assert [(e.kind, e.step) for e in step.effects] == [("send_email", "nudge")]
    assert step.step is None
    assert not step.exited


def test_after_the_wait_an_open_tags_and_notifies() -> None:
    facts = Facts(engagement=frozenset({"opened"}))
    step = advance(journey(), "pause", facts=facts, now=NOW + timedelta(seconds=3), waiting_since=NOW)
    assert [(e.kind, e.step) for e in step.effects] == [("update_contact", "tag"), ("notify_owner", "tell")]
    assert step.effects[0].params["add_tags"] == ["engaged"]


def test_wait_until_moves_on_at_the_event_or_the_timeout() -> None:
    raw = {"trigger": {"kind": "ticket_solved"}, "start": "w",
           "steps": {"w": {"kind": "wait_until", "event": "purchase", "timeout_seconds": 60, "next": "x"},
                     "x": {"kind": "exit"}}}
    j, errors = validate_journey(raw)
    assert errors == []
    assert j is not None
    first = advance(j, "w", facts=Facts(), now=NOW)
    assert (first.step, first.waiting_for, first.next_at) == ("w", "purchase", NOW + timedelta(seconds=60))
    early = advance(j, "w", facts=Facts(), now=NOW + timedelta(seconds=5), waiting_since=NOW)
    assert early.step == "w"
    came = advance(j, "w", facts=Facts(events=frozenset({"purchase"})), now=NOW + timedelta(seconds=5),
                   waiting_since=NOW)
    assert came.step is None
    assert came.exited
    late = advance(j, "w", facts=Facts(), now=NOW + timedelta(seconds=60), waiting_since=NOW)
    assert late.exited


def test_field_conditions() -> None:
    raw = {"trigger": {"kind": "deal_stage_changed", "stage": "won"}, "start": "c",
           "steps": {"c": {"kind": "condition", "test": {"field": "plan", "equals": "pro"},
                           "then": "y", "else": "n"},
                     "y": {"kind": "notify_owner", "message": "pro"}, "n": {"kind": "exit"}}}
    j, _ = validate_journey(raw)
    assert j is not None
    assert advance(j, "c", facts=Facts(fields={"plan": "pro"}), now=NOW).effects[0].step == "y"
    assert advance(j, "c", facts=Facts(fields={"plan": "free"}), now=NOW).exited


def test_triggers_match_their_kind_and_filter() -> None:
    assert trigger_matches(Trigger("segment_joined", "s1"), "segment_joined", segment_id="s1")
    assert not trigger_matches(Trigger("segment_joined", "s1"), "segment_joined", segment_id="s2")
    assert trigger_matches(Trigger("deal_stage_changed"), "deal_stage_changed", stage="any")
    assert not trigger_matches(Trigger("deal_stage_changed", stage="won"), "deal_stage_changed", stage="lost")
    assert not trigger_matches(Trigger("purchase"), "ticket_solved")
