"""The pure rules of replies, notes, collisions, delivery statuses and macros."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from crm_ticketing.domain.errors import InvalidFields
from crm_ticketing.domain.model import InboundMessage, parent_keys
from crm_ticketing.domain.replies import (
    MAX_REFERENCES,
    MessageSummary,
    collisions,
    email_threading,
    macro_changes,
    next_delivery_status,
    parse_draft,
    parse_macro,
    parse_template,
    render,
    reply_subject,
    status_after_message,
    ticket_token,
    token_in,
    token_key,
)
from crmkit.ids import uuid7

TICKET = UUID("0193a1b2-c3d4-7e5f-8a6b-1c2d3e4f5a6b")
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def fields_of(exc: pytest.ExceptionInfo[InvalidFields]) -> list[str]:
    return [e.field for e in exc.value.errors]


def test_a_token_is_16_base32_characters_of_the_random_tail_and_differs_per_ticket() -> None:
    token = ticket_token(TICKET)
    assert len(token) == 16
    assert token == token.upper()
    assert ticket_token(TICKET) == token
    same_millisecond = UUID(int=TICKET.int ^ 1)
    assert ticket_token(same_millisecond) != token
    assert len({ticket_token(uuid7()) for _ in range(1000)}) == 1000


def test_the_token_is_found_in_a_subject_whatever_its_case_and_only_in_brackets() -> None:
    token = ticket_token(TICKET)
    assert token_in(f"Re: Help [#{token}]") == token
    assert token_in(f"AW: Re: Help [#{token.lower()}] more") == token
    assert token_in(f"Help #{token}") is None
    assert token_in("Help [#short]") is None
    assert token_in("") is None
    assert token_key(token.lower()) == f"token:{token}"


def test_a_reply_subject_has_one_re_and_the_token_once() -> None:
    token = ticket_token(TICKET)
    assert reply_subject("Help", TICKET) == f"Re: Help [#{token}]"
    assert reply_subject("Re: RE:  fwd: Help  me", TICKET) == f"Re: Help me [#{token}]"
    assert reply_subject(f"Re: Help [#{token}]", TICKET) == f"Re: Help [#{token}]"
    assert reply_subject("", TICKET) == f"Re: [#{token}]"
    assert len(reply_subject("x" * 2000, TICKET)) <= 998


def inbound(subject: str = "", in_reply_to: str = "", references: tuple[str, ...] = ()) -> InboundMessage:
    return InboundMessage(interaction_id="i1", workspace_id="ws", contact_id=uuid7(), channel="email",
                          subject=subject, message_id="m2@x", in_reply_to=in_reply_to,
                          references=references, conversation_id="", occurred_at=NOW)


def test_the_subject_token_is_the_last_fallback_and_the_subject_alone_is_never_a_key() -> None:
    token = ticket_token(TICKET)
    assert parent_keys(inbound(f"Re: Help [#{token}]", "m1@x", ("m0@x",))) == [
        "msgid:m1@x", "msgid:m0@x", f"token:{token}"]
    assert parent_keys(inbound(f"Re: Help [#{token}]")) == [f"token:{token}"]
    assert parent_keys(inbound("Re: Help")) == []


def test_a_reply_answers_the_customers_latest_message_with_the_chain_up_to_it() -> None:
    chain = ["c1@x", "a1@us", "c2@x", "a2@us"]
    threading = email_threading(chain, {"a1@us", "a2@us"})
    assert threading.in_reply_to == "c2@x"
    assert threading.references == ("c1@x", "a1@us", "c2@x")
    assert email_threading(["a1@us"], {"a1@us"}).in_reply_to == ""
    assert email_threading([], set()).references == ()


def test_a_long_chain_keeps_the_first_and_the_latest_references() -> None:
    chain = [f"c{n}@x" for n in range(50)]
    threading = email_threading(chain, set())
    assert len(threading.references) == MAX_REFERENCES
    assert threading.references[0] == "c0@x"
    assert threading.references[-1] == "c49@x" == threading.in_reply_to


def test_only_what_others_wrote_collides() -> None:
    mine = MessageSummary("n1", "note", "agent-1", NOW)
    theirs = MessageSummary("r1", "reply", "agent-2", NOW)
    customer = MessageSummary("i1", "inbound", "contact", NOW)
    assert collisions([mine, theirs, customer], "agent-1") == [theirs, customer]
    assert collisions([mine], "agent-1") == []


def test_a_public_reply_opens_a_new_ticket_unless_another_status_is_asked() -> None:
    assert status_after_message("new", None, internal=False) == "open"
    assert status_after_message("new", None, internal=True) is None
    assert status_after_message("open", None, internal=False) is None
    assert status_after_message("new", "solved", internal=False) == "solved"
    assert status_after_message("open", "pending", internal=True) == "pending"


def test_a_draft_names_every_bad_field() -> None:
    with pytest.raises(InvalidFields) as exc:
        parse_draft({"body": " ", "internal": "yes", "force": 1, "after": 3, "color": "red"})
    assert sorted(fields_of(exc)) == ["after", "body", "color", "force", "internal"]
    with pytest.raises(InvalidFields) as exc:
        parse_draft({"body": "hi", "attachments": [{"ref": "a"}]})
    assert fields_of(exc) == ["attachments"]
    with pytest.raises(InvalidFields) as exc:
        parse_draft({"body": "hi", "internal": True, "attachments": [{"filename": "x"}]})
    assert fields_of(exc) == ["attachments"]
    note = parse_draft({"body": "hi", "internal": True, "attachments": [{"ref": "file-1", "size": 3}],
                        "after": "m1", "force": True})
    assert (note.internal, note.attachments, note.after, note.force) == (True, [{"ref": "file-1", "size": 3}],
                                                                          "m1", True)


def test_a_delivery_status_never_goes_back_but_a_failure_wins() -> None:
    assert next_delivery_status("queued", "sent") == "sent"
    assert next_delivery_status("sent", "read") == "read"
    assert next_delivery_status("read", "delivered") is None
    assert next_delivery_status("read", "sent") is None
    assert next_delivery_status("sent", "sent") is None
    assert next_delivery_status("sent", "bounced") == "bounced"
    assert next_delivery_status("bounced", "delivered") is None
    assert next_delivery_status(None, "delivered") == "delivered"
    assert next_delivery_status("sent", "exploded") is None


def test_a_template_renders_values_and_defaults() -> None:
    template = 'Hi {{ contact.first_name | default("there") }}, about "{{ticket.subject}}" ({{agent.name}})'
    values = {"contact.first_name": "Ada", "ticket.subject": "Help", "agent.name": "Bo"}
    assert render(template, values) == 'Hi Ada, about "Help" (Bo)'
    values = {"contact.first_name": "", "ticket.subject": "Help"}
    assert render(template, values) == 'Hi there, about "Help" ()'
    assert render("no placeholders", {}) == "no placeholders"


def test_unknown_or_malformed_placeholders_are_refused() -> None:
    with pytest.raises(InvalidFields) as exc:
        parse_template("{{contact.shoe_size}} {{ what }} {{ticket.id|upper}}")
    assert fields_of(exc) == ["body", "body", "body"]
    assert "contact.shoe_size" in exc.value.errors[0].message
    with pytest.raises(InvalidFields):
        parse_template("Hello {{ticket.id")


def test_a_macro_is_checked_whole() -> None:
    values = parse_macro({"name": " Refund ", "body": "Hi {{contact.first_name}}",
                          "actions": {"status": "pending", "add_tags": ["refund"]}})
    assert values == {"name": "Refund", "body": "Hi {{contact.first_name}}", "internal": False,
                      "actions": {"status": "pending", "add_tags": ["refund"]}}
    with pytest.raises(InvalidFields) as exc:
        parse_macro({"name": "", "body": "{{nope.x}}", "internal": 1,
                     "actions": {"status": "gone", "priority": "meh", "add_tags": "x", "assignee": 5,
                                 "color": "red"},
                     "extra": 1})
    assert sorted(fields_of(exc)) == sorted(["extra", "name", "body", "internal", "actions.status",
                                             "actions.priority", "actions.add_tags", "actions.assignee",
                                             "actions.color"])
    with pytest.raises(InvalidFields) as exc:
        parse_macro({"name": "Empty", "body": ""})
    assert fields_of(exc) == ["body"]
    assert parse_macro({"body": "x"}, partial=True) == {"body": "x"}


def test_macro_actions_become_a_patch_of_the_tag_set() -> None:
    assert macro_changes({"status": "solved", "add_tags": ["Refund", "vip"], "remove_tags": ["urgent"]},
                         ["urgent", "vip"]) == {"status": "solved", "tags": ["vip", "Refund", "vip"]}
    assert macro_changes({"priority": "high", "assignee": None}, ["a"]) == {"priority": "high",
                                                                           "assignee": None}
