"""Journeys: multi-step automations a contact runs through after a trigger. Pure.

A journey is a trigger, a graph of named steps (``start`` names the first) and exit
conditions. A run is one contact's way through one journey; ``advance`` decides what a run
does next from its current step and what is known about the contact, and the service layer
carries the effects out (send, update, notify) and stores the new position.

Steps (``kind`` and its fields; ``next`` names the following step, absent = the end):
- ``wait {seconds}``
- ``wait_until {event, timeout_seconds}`` — resumes on the event or after the timeout
- ``condition {test, then, else}`` — test: ``{field, equals}``, ``{tag}`` or ``{engagement: opened|clicked}``
  (of the run's last email)
- ``send_email {template_id}``
- ``update_contact {add_tags?, remove_tags?, fields?}``
- ``notify_owner {message}``
- ``exit``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crmkit.fields import FieldError

TRIGGERS = ("segment_joined", "deal_stage_changed", "ticket_solved", "purchase")
STEP_KINDS = ("wait", "wait_until", "condition", "send_email", "update_contact", "notify_owner", "exit")
EVENTS = ("opened", "clicked", "purchase", "deal_won", "ticket_solved")
EXIT_CONDITIONS = ("unsubscribed", "deal_won", "deal_lost", "purchase")
ENGAGEMENTS = ("opened", "clicked")
MAX_STEPS = 100
MAX_WAIT = 365 * 24 * 3600


@dataclass(frozen=True)
class Trigger:
    kind: str
    segment_id: str | None = None      # segment_joined
    stage: str | None = None           # deal_stage_changed: the stage entered (None = any)


@dataclass(frozen=True)
class Journey:
    trigger: Trigger
    steps: Mapping[str, Mapping[str, Any]]
    start: str
    exit_on: tuple[str, ...] = ()


def _positive_int(v: Any, limit: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= limit


def _check_step(name: str, step: Any, names: set[str]) -> list[FieldError]:
    where = f"steps.{name}"
    if not isinstance(step, Mapping):
        return [FieldError(where, "must be an object")]
    kind = step.get("kind")
    if kind not in STEP_KINDS:
        return [FieldError(f"{where}.kind", f"must be one of {', '.join(STEP_KINDS)}")]
    errors: list[FieldError] = []
    targets = {"next": step.get("next")}
    if kind == "wait" and not _positive_int(step.get("seconds"), MAX_WAIT):
        errors.append(FieldError(f"{where}.seconds", f"must be whole seconds between 1 and {MAX_WAIT}"))
    elif kind == "wait_until":
        if step.get("event") not in EVENTS:
            errors.append(FieldError(f"{where}.event", f"must be one of {', '.join(EVENTS)}"))
        if not _positive_int(step.get("timeout_seconds"), MAX_WAIT):
            errors.append(FieldError(f"{where}.timeout_seconds",
                                     f"must be whole seconds between 1 and {MAX_WAIT}"))
    elif kind == "condition":
        errors += _check_test(f"{where}.test", step.get("test"))
        targets = {"then": step.get("then"), "else": step.get("else")}
    elif kind == "send_email":
        if not isinstance(step.get("template_id"), str) or not step["template_id"]:
            errors.append(FieldError(f"{where}.template_id", "must be a template id"))
    elif kind == "update_contact":
        add, remove, fields = step.get("add_tags", []), step.get("remove_tags", []), step.get("fields", {})
        for key, tags in (("add_tags", add), ("remove_tags", remove)):
            if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
                errors.append(FieldError(f"{where}.{key}", "must be a list of tags"))
        if not isinstance(fields, Mapping) or not all(isinstance(k, str) and k for k in fields):
            errors.append(FieldError(f"{where}.fields", "must map custom field keys to values"))
        elif not add and not remove and not fields:
            errors.append(FieldError(where, "changes nothing: give add_tags, remove_tags or fields"))
    elif kind == "notify_owner":
        msg = step.get("message")
        if not isinstance(msg, str) or not msg.strip() or len(msg) > 1000:
            errors.append(FieldError(f"{where}.message", "must be a message of at most 1000 characters"))
    elif kind == "exit":
        targets = {}
    for key, target in targets.items():
        if target is not None and target not in names:
            errors.append(FieldError(f"{where}.{key}", f"names no step: {target!r}"))
    return errors


def _check_test(where: str, test: Any) -> list[FieldError]:
    if not isinstance(test, Mapping):
        return [FieldError(where, "must be an object with field, tag or engagement")]
    if "engagement" in test:
        ok = test["engagement"] in ENGAGEMENTS
        return [] if ok else [FieldError(f"{where}.engagement", "must be opened or clicked")]
    for key in ("tag", "field"):
        if key in test:
            ok = isinstance(test[key], str) and bool(test[key])
            return [] if ok else [FieldError(f"{where}.{key}", f"must name a {key}")]
    return [FieldError(where, "must test a field, a tag or an engagement")]


def validate_journey(raw: Mapping[str, Any]) -> tuple[Journey | None, list[FieldError]]:
    """Check a journey definition: a known trigger, at most ``MAX_STEPS`` well-formed steps whose
    links name existing steps, a ``start`` step, no step unreachable from it, no cycle without a
    wait (so a run always pauses), known exit conditions. Returns every bad field at once."""
    errors: list[FieldError] = []
    trig = raw.get("trigger")
    trigger: Trigger | None = None
    if not isinstance(trig, Mapping) or trig.get("kind") not in TRIGGERS:
        errors.append(FieldError("trigger.kind", f"must be one of {', '.join(TRIGGERS)}"))
    else:
        seg, stage = trig.get("segment_id"), trig.get("stage")
        if trig["kind"] == "segment_joined" and (not isinstance(seg, str) or not seg):
            errors.append(FieldError("trigger.segment_id", "a segment_joined trigger names its segment"))
        if stage is not None and not isinstance(stage, str):
            errors.append(FieldError("trigger.stage", "must be a stage id"))
        trigger = Trigger(trig["kind"], seg if isinstance(seg, str) else None, stage)
    steps = raw.get("steps")
    if not isinstance(steps, Mapping) or not steps or len(steps) > MAX_STEPS:
        errors.append(FieldError("steps", f"give between 1 and {MAX_STEPS} steps"))
        steps = {}
    names = set(steps)
    for name, step in steps.items():
        errors += _check_step(name, step, names)
    start = raw.get("start")
    if steps and start not in names:
        errors.append(FieldError("start", "must name a step"))
    exit_on = raw.get("exit_on", [])
    if not isinstance(exit_on, list) or any(e not in EXIT_CONDITIONS for e in exit_on):
        errors.append(FieldError("exit_on", f"must be a list of {', '.join(EXIT_CONDITIONS)}"))
    if errors:
        return None, errors
    assert trigger is not None
    assert isinstance(start, str)
    unreachable = names - _reachable(steps, start)
    errors += [FieldError(f"steps.{n}", "is not reachable from start") for n in sorted(unreachable)]
    errors += [FieldError(f"steps.{n}", "is on a loop without a wait") for n in _busy_loops(steps)]
    if errors:
        return None, errors
    return Journey(trigger, {k: dict(v) for k, v in steps.items()}, start, tuple(exit_on)), []


def _successors(step: Mapping[str, Any]) -> list[str]:
    keys = ("then", "else") if step["kind"] == "condition" else ("next",)
    return [step[k] for k in keys if step.get(k) is not None]


def _reachable(steps: Mapping[str, Mapping[str, Any]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += _successors(steps[n])
    return seen


def _busy_loops(steps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Steps on a cycle of the graph without the waits: a run there would never pause."""
    busy = {n: [s for s in _successors(st) if steps[s]["kind"] not in ("wait", "wait_until")]
            for n, st in steps.items() if st["kind"] not in ("wait", "wait_until")}
    on_loop = []
    for n in busy:
        seen, todo = set(), list(busy[n])
        while todo:
            m = todo.pop()
            if m == n:
                on_loop.append(n)
                break
            if m not in seen and m in busy:
                seen.add(m)
                todo += busy[m]
    return sorted(on_loop)


@dataclass(frozen=True)
class Facts:
    """What a run knows about its contact when it advances."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    engagement: frozenset[str] = frozenset()   # opened/clicked of the run's last email
    events: frozenset[str] = frozenset()       # events seen since the current wait_until began


@dataclass(frozen=True)
class Effect:
    """One thing the service carries out for a run: ``kind`` is a step kind (send_email,
    update_contact, notify_owner) and ``step`` the step's name (unique per run: a send's id
    derives from it, so a replay never sends twice)."""

    kind: str
    step: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Advance:
    """Where a run goes: its new ``step`` (None = done), the effects to carry out first,
    ``next_at`` (when to look again), ``waiting_for`` (the event a wait_until awaits) and
    ``waiting_since`` (when the run began the wait it sits at)."""

    step: str | None
    effects: tuple[Effect, ...] = ()
    next_at: datetime | None = None
    waiting_for: str | None = None
    exited: bool = False
    waiting_since: datetime | None = None


def condition_holds(test: Mapping[str, Any], facts: Facts) -> bool:
    if "engagement" in test:
        return test["engagement"] in facts.engagement
    if "tag" in test:
        return test["tag"] in facts.tags
    value = facts.fields.get(test["field"])
    if "equals" in test:
        return bool(value == test["equals"])
    return value not in (None, "", [], False)


def advance(journey: Journey, step: str | None, *, facts: Facts, now: datetime,
            waiting_since: datetime | None = None) -> Advance:
    """Run from ``step`` until the run must wait or is done, collecting effects on the way.
    ``waiting_since`` is set when the run sits at that wait step already (it started waiting
    then); a wait whose time has come, or a wait_until whose event came, moves on."""
    effects: list[Effect] = []
    hops = 0
    while step is not None:
        hops += 1
        if hops > MAX_STEPS + 1:  # validation forbids loops without waits; belt and braces
            return Advance(None, tuple(effects), exited=True)
        s = journey.steps[step]
        kind = s["kind"]
        if kind in ("wait", "wait_until"):
            if waiting_since is None:  # arrived now: start waiting
                seconds = s["seconds"] if kind == "wait" else s["timeout_seconds"]
                return Advance(step, tuple(effects), now + timedelta(seconds=seconds),
                               s.get("event") if kind == "wait_until" else None, waiting_since=now)
            seconds = s["seconds"] if kind == "wait" else s["timeout_seconds"]
            due = waiting_since + timedelta(seconds=seconds)
            event_came = kind == "wait_until" and s["event"] in facts.events
            if now < due and not event_came:
                return Advance(step, tuple(effects), due, s.get("event") if kind == "wait_until" else None,
                               waiting_since=waiting_since)
            waiting_since = None
            step = s.get("next")
            continue
        waiting_since = None
        if kind == "exit":
            return Advance(None, tuple(effects), exited=True)
        if kind == "condition":
            step = s["then"] if condition_holds(s["test"], facts) else s["else"]
            continue
        params = {k: v for k, v in s.items() if k not in ("kind", "next")}
        effects.append(Effect(kind, step, params))
        step = s.get("next")
    return Advance(None, tuple(effects))


def exit_reason(journey: Journey, event: str) -> str | None:
    """The exit condition ``event`` meets, if the journey has it."""
    return event if event in journey.exit_on else None


def trigger_matches(trigger: Trigger, kind: str, *, segment_id: str | None = None,
                    stage: str | None = None) -> bool:
    if trigger.kind != kind:
        return False
    if kind == "segment_joined":
        return trigger.segment_id == segment_id
    if kind == "deal_stage_changed":
        return trigger.stage is None or trigger.stage == stage
    return True

