from datetime import UTC, datetime
from uuid import uuid4

import pytest

from crm_ticketing.domain.model import InboundMessage, decode_cursor, encode_cursor, own_keys, parent_keys


def message(**kw: object) -> InboundMessage:
    fields: dict[str, object] = {
        "interaction_id": "i1", "workspace_id": "ws", "contact_id": uuid4(), "channel": "email",
        "subject": "Re: Order", "message_id": "m2@x", "in_reply_to": "", "references": (),
        "conversation_id": "", "occurred_at": datetime(2026, 11, 23, tzinfo=UTC),
    }
    fields.update(kw)
    return InboundMessage(**fields)  # type: ignore[arg-type]


def test_an_email_reply_looks_for_its_parent_then_the_older_references() -> None:
    keys = parent_keys(message(in_reply_to="m1@x", references=("m0@x", "m1@x")))
    assert keys == ["msgid:m1@x", "msgid:m0@x"]


def test_a_first_message_has_no_parent_and_the_subject_never_threads() -> None:
    assert parent_keys(message(subject="Re: Order")) == []


def test_chat_threads_by_conversation() -> None:
    chat = message(channel="chat", message_id="", conversation_id="session-9")
    assert parent_keys(chat) == ["conv:chat:session-9"]
    assert own_keys(chat) == ["conv:chat:session-9"]


def test_later_messages_find_a_ticket_by_this_messages_id() -> None:
    assert own_keys(message()) == ["msgid:m2@x"]


def test_ticket_cursors_round_trip_and_reject_forgeries() -> None:
    ticket_id = uuid4()
    stamp = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert decode_cursor(encode_cursor(stamp, ticket_id)) == (stamp, ticket_id)
    with pytest.raises(ValueError, match="not enough values"):
        decode_cursor("bm9wZQ")


def test_cursors_with_out_of_range_or_zoneless_times_are_refused() -> None:
    import base64

    for stamp in ("0001-01-01T00:00:00+14:00", "2026-11-23T09:30:00"):
        forged = base64.urlsafe_b64encode(f"{stamp}|{uuid4()}".encode()).decode()
        with pytest.raises(ValueError, match="cursor's time"):
            decode_cursor(forged)
