"""Activities' rules: what a written activity needs, completion, the stream's kinds, rotting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from crm.ingest.v1 import events_pb2, interaction_pb2
from crm_pipeline.consumers.interactions import interaction_message
from crm_pipeline.domain.activities import (
    STREAM_BODY_CHARS,
    Activity,
    Kind,
    ReadOnlyActivity,
    apply_changes,
    complete,
    is_rotting,
    parse_changes,
    parse_new,
    rotting_since,
    stream_body,
    stream_kind,
)
from crm_pipeline.domain.errors import InvalidFields
from crmkit.kafka import Envelope

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DEAL = UUID("0190aaaa-0000-7000-8000-00000000000d")
CONTACT = UUID("0190aaaa-0000-7000-8000-00000000000c")


def fields_of(error: pytest.ExceptionInfo[InvalidFields]) -> set[str]:
    return {e.field for e in error.value.errors}


def task(**changes: object) -> Activity:
    base = Activity(
        id=UUID(int=1),
        workspace_id="ws",
        kind=Kind.TASK,
        subject="Send the quote",
        body="",
        due_at=NOW + timedelta(days=1),
        owner_id="u1",
        deal_id=DEAL,
        contact_id=None,
        completed_at=None,
        completed_by=None,
        interaction_id=None,
        direction=None,
        version=1,
        created_by="u1",
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_task_on_a_deal_is_open_until_completed_and_a_note_is_done_when_written() -> None:
    draft = parse_new(
        {
            "kind": "task",
            "subject": " Call back ",
            "deal_id": str(DEAL),
            "due_at": "2026-11-25T10:00:00+01:00",
        }
    )
    assert (draft.kind, draft.subject, draft.deal_id, draft.done) == (Kind.TASK, "Call back", DEAL, False)
    assert draft.due_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    note = parse_new({"kind": "note", "body": "Budget approved", "contact_id": str(CONTACT)})
    assert (note.done, note.deal_id, note.contact_id) == (True, None, CONTACT)
    logged = parse_new({"kind": "call", "subject": "Intro call", "contact_id": str(CONTACT), "done": True})
    assert logged.done


def test_every_bad_field_of_a_new_activity_is_named_at_once() -> None:
    with pytest.raises(InvalidFields) as bad:
        parse_new(
            {
                "kind": "email",
                "subject": 7,
                "due_at": "tomorrow",
                "deal_id": "nope",
                "colour": "red",
                "owner_id": "",
                "done": "yes",
            }
        )
    assert fields_of(bad) == {"kind", "subject", "due_at", "deal_id", "colour", "owner_id", "done"}
    with pytest.raises(InvalidFields) as naive:
        parse_new({"kind": "task", "subject": "x", "deal_id": str(DEAL), "due_at": "2026-11-25T10:00:00"})
    assert fields_of(naive) == {"due_at"}
    with pytest.raises(InvalidFields) as too_long:
        parse_new({"kind": "task", "subject": "x" * 301, "deal_id": str(DEAL)})
    assert fields_of(too_long) == {"subject"}


def test_an_activity_is_about_a_deal_or_a_contact_and_a_note_has_a_body_and_no_due_date() -> None:
    with pytest.raises(InvalidFields) as nowhere:
        parse_new({"kind": "task", "subject": "Floating"})
    assert fields_of(nowhere) == {"deal_id"}
    with pytest.raises(InvalidFields) as note:
        parse_new(
            {"kind": "note", "body": " ", "deal_id": str(DEAL), "due_at": NOW.isoformat(), "done": False}
        )
    assert fields_of(note) == {"body", "due_at", "done"}
    with pytest.raises(InvalidFields) as meeting:
        parse_new({"kind": "meeting", "deal_id": str(DEAL)})
    assert fields_of(meeting) == {"subject"}


def test_completing_sets_who_and_when_once_and_a_note_or_a_message_cannot_be_completed() -> None:
    done = complete(task(), NOW, "u2")
    assert done is not None
    assert (done.completed_at, done.completed_by, done.done) == (NOW, "u2", True)
    assert complete(done, NOW + timedelta(hours=1), "u3") is None
    with pytest.raises(InvalidFields) as note:
        complete(task(kind=Kind.NOTE, completed_at=None), NOW, "u2")
    assert fields_of(note) == {"kind"}
    with pytest.raises(ReadOnlyActivity):
        complete(task(kind=Kind.EMAIL, interaction_id="i-1"), NOW, "u2")


def test_changes_are_checked_on_the_whole_activity_and_done_completes_or_reopens() -> None:
    moved = apply_changes(task(), parse_changes({"deal_id": None, "contact_id": str(CONTACT)}), NOW, "u2")
    assert (moved.deal_id, moved.contact_id) == (None, CONTACT)
    with pytest.raises(InvalidFields) as unlinked:
        apply_changes(task(), parse_changes({"deal_id": None}), NOW, "u2")
    assert fields_of(unlinked) == {"deal_id"}
    with pytest.raises(InvalidFields) as kind:
        parse_changes({"kind": "note", "subject": "x"})
    assert fields_of(kind) == {"kind"}
    done = apply_changes(task(), {"done": True}, NOW, "u2")
    assert (done.completed_at, done.completed_by) == (NOW, "u2")
    reopened = apply_changes(done, {"done": False}, NOW, "u2")
    assert (reopened.completed_at, reopened.completed_by) == (None, None)
    with pytest.raises(ReadOnlyActivity):
        apply_changes(task(kind=Kind.CHAT, interaction_id="i-2"), {"subject": "edited"}, NOW, "u2")


def test_the_stream_gives_channels_as_kinds_and_skips_what_nobody_wrote() -> None:
    assert stream_kind("email", "message") is Kind.EMAIL
    assert stream_kind("whatsapp", "message") is Kind.WHATSAPP
    assert stream_kind("commerce", "order") is Kind.ORDER
    assert stream_kind("email", "auto_reply") is None
    assert stream_kind("email", "bounce") is None
    assert stream_kind("email", "complaint") is None
    assert stream_kind("unspecified", "message") is None
    assert stream_body("short") == "short"
    long = stream_body("x" * 2000)
    assert (len(long), long[-1]) == (STREAM_BODY_CHARS, "…")


def test_an_interaction_event_becomes_a_stream_message() -> None:
    item = interaction_pb2.Interaction(
        id="i-9",
        workspace_id="ws",
        contact_id=str(CONTACT),
        channel="CHANNEL_CHAT",
        direction=interaction_pb2.DIRECTION_OUTBOUND,
        subject="",
        text="Hi!",
        kind=interaction_pb2.INTERACTION_KIND_MESSAGE,
    )
    item.occurred_at.FromDatetime(NOW)
    recorded = events_pb2.InteractionRecorded(interaction=item)
    envelope = Envelope(
        id="e1",
        type="t",
        source="/s",
        workspace="ws",
        subject=str(CONTACT),
        time=NOW,
        data=recorded.SerializeToString(),
        dataschema="",
        trace={},
    )
    message = interaction_message(envelope, recorded)
    assert (
        message.interaction_id,
        message.contact_id,
        message.kind,
        message.direction,
        message.occurred_at,
    ) == ("i-9", CONTACT, Kind.CHAT, "outbound", NOW)


def test_a_deal_rots_when_quiet_past_its_stages_threshold_since_its_later_activity_or_stage_entry() -> None:
    entered = NOW - timedelta(days=20)
    assert rotting_since(None, entered) == entered
    assert rotting_since(NOW - timedelta(days=3), entered) == NOW - timedelta(days=3)
    assert rotting_since(NOW - timedelta(days=30), entered) == entered
    assert is_rotting(open_=True, rotting_days=14, last_activity_at=None, stage_entered_at=entered, now=NOW)
    assert not is_rotting(
        open_=True,
        rotting_days=14,
        last_activity_at=NOW - timedelta(days=3),
        stage_entered_at=entered,
        now=NOW,
    )
    assert not is_rotting(
        open_=True, rotting_days=None, last_activity_at=None, stage_entered_at=entered, now=NOW
    )
    assert not is_rotting(
        open_=False, rotting_days=1, last_activity_at=None, stage_entered_at=entered, now=NOW
    )
    exactly = NOW - timedelta(days=14)
    assert not is_rotting(
        open_=True, rotting_days=14, last_activity_at=exactly, stage_entered_at=entered, now=NOW
    )
