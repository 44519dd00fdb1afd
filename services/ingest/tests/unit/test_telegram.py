import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_ingest.domain.message import InboundMessage, MalformedMessage, MediaRef, Reaction
from crm_ingest.domain.telegram import (
    MalformedTelegram,
    NotTelegram,
    parse_telegram,
    secret_token_allowed,
    secret_valid,
    split_update,
)

BOT = "acme_support_bot"
USER = {"id": 111222333, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace",
        "username": "ada_l", "language_code": "en"}
PRIVATE = {"id": 111222333, "first_name": "Ada", "last_name": "Lovelace", "username": "ada_l",
           "type": "private"}
GROUP = {"id": -1001234567890, "title": "Acme customers", "type": "supergroup"}
DATE = 1763884800


def update(**kinds: Any) -> bytes:
    return json.dumps({"update_id": 900000001, **kinds}).encode()


def message(chat: dict[str, Any] = PRIVATE, **more: Any) -> dict[str, Any]:
    return {"message_id": 1365, "from": USER, "chat": chat, "date": DATE, **more}


def one(body: bytes) -> InboundMessage | Reaction:
    item = split_update(BOT, body)
    assert item is not None
    return parse_telegram(item.payload)


def test_the_secret_token_must_match_exactly() -> None:
    secret = b"Telegram_secret-token_0123456789abcdef"
    assert secret_valid(secret, secret.decode())
    assert not secret_valid(secret, secret.decode() + "x")
    assert not secret_valid(secret, "")
    assert not secret_valid(secret, None)
    assert not secret_valid(secret, "é" * 10)
    assert secret_token_allowed("A-z_09" * 6)
    assert not secret_token_allowed("with space")
    assert not secret_token_allowed("x" * 257)
    assert not secret_token_allowed("ok\n")


def test_a_private_text_message_is_from_the_user_in_the_bots_chat() -> None:
    found = one(update(message=message(text="Where is my parcel?")))
    assert isinstance(found, InboundMessage)
    assert (found.channel, found.message_id, found.sender_kind, found.sender, found.sender_name) == (
        "telegram", "111222333:1365", "telegram", "111222333", "Ada Lovelace")
    assert found.text == "Where is my parcel?"
    assert found.sent_at == datetime.fromtimestamp(DATE, UTC)
    assert found.conversation_id == f"{BOT}:111222333"
    assert found.metadata == {"chat_id": "111222333", "chat_type": "private", "username": "ada_l"}


def test_a_group_message_threads_by_the_chat_and_replies_name_the_earlier_message() -> None:
    found = one(update(message=message(GROUP, text="+1", reply_to_message=message(GROUP, message_id=1300))))
    assert isinstance(found, InboundMessage)
    assert found.sender == "111222333"  # the person, not the group
    assert found.message_id == "-1001234567890:1365"
    assert found.conversation_id == f"{BOT}:-1001234567890"
    assert found.in_reply_to == "-1001234567890:1300"


def test_a_photo_keeps_its_largest_size_and_the_caption_is_the_text() -> None:
    photo = [{"file_id": "AgAD-small", "file_unique_id": "s", "width": 90, "height": 90},
             {"file_id": "AgAD-large", "file_unique_id": "l", "width": 1280, "height": 1280}]
    found = one(update(message=message(photo=photo, caption="The box arrived like this")))
    assert isinstance(found, InboundMessage)
    assert found.text == "The box arrived like this"
    assert found.media == (MediaRef("image", "AgAD-large", "", caption="The box arrived like this"),)


@pytest.mark.parametrize(("key", "file", "expected"), [
    ("document", {"file_id": "BQAD", "file_name": "invoice.pdf", "mime_type": "application/pdf"},
     MediaRef("document", "BQAD", "application/pdf", filename="invoice.pdf")),
    ("voice", {"file_id": "AwAD", "duration": 4, "mime_type": "audio/ogg"},
     MediaRef("audio", "AwAD", "audio/ogg")),
    ("video", {"file_id": "BAAD", "mime_type": "video/mp4", "duration": 9},
     MediaRef("video", "BAAD", "video/mp4")),
])
def test_files_become_media_references_by_their_file_id(key: str, file: dict[str, Any],
                                                       expected: MediaRef) -> None:
    found = one(update(message=message(**{key: file})))
    assert isinstance(found, InboundMessage)
    assert found.media == (expected,)


def test_an_animation_sent_also_as_a_document_is_kept_once() -> None:
    gif = {"file_id": "CgAD", "mime_type": "video/mp4", "file_name": "party.mp4"}
    found = one(update(message=message(animation=gif, document=gif)))
    assert isinstance(found, InboundMessage)
    assert found.media == (MediaRef("video", "CgAD", "video/mp4", filename="party.mp4"),)


def test_an_edit_is_its_own_interaction_beside_the_message_it_changes() -> None:
    found = one(update(edited_message=message(text="Where is my parcel? (order 1001)", edit_date=DATE + 60)))
    assert isinstance(found, InboundMessage)
    assert found.message_id == f"edit:{DATE + 60}:111222333:1365"
    assert found.metadata["edit_of"] == "111222333:1365"
    assert found.sent_at == datetime.fromtimestamp(DATE + 60, UTC)


@pytest.mark.parametrize(("old", "new", "emoji"), [
    ([], [{"type": "emoji", "emoji": "\U0001f44d"}], "\U0001f44d"),
    ([{"type": "emoji", "emoji": "\U0001f44d"}],
     [{"type": "emoji", "emoji": "\U0001f44d"}, {"type": "emoji", "emoji": "\u2764"}], "\u2764"),
    ([{"type": "emoji", "emoji": "\U0001f44d"}], [], ""),
    ([], [{"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"}],
     "custom_emoji:5368324170671202286"),
], ids=["added", "another-added", "taken-back", "custom"])
def test_a_reaction_is_the_one_just_added_on_the_message_in_its_chat(old: list[Any], new: list[Any],
                                                                      emoji: str) -> None:
    body = update(message_reaction={"chat": PRIVATE, "message_id": 1370, "user": USER, "date": DATE,
                                    "old_reaction": old, "new_reaction": new})
    item = split_update(BOT, body)
    assert item is not None
    assert (item.kind, item.person) == ("reaction", "111222333")
    assert parse_telegram(item.payload) == Reaction("telegram", "111222333:1370", emoji,
                                                    datetime.fromtimestamp(DATE, UTC))


@pytest.mark.parametrize("kinds", [
    {"channel_post": {"message_id": 1, "chat": {"id": -100, "type": "channel"}, "date": DATE, "text": "x"}},
    {"callback_query": {"id": "1", "from": USER, "data": "x"}},
    {"my_chat_member": {}},
    {"message_reaction_count": {"chat": GROUP, "message_id": 1, "date": DATE, "reactions": []}},
])
def test_other_updates_are_acknowledged_without_a_record(kinds: dict[str, Any]) -> None:
    assert split_update(BOT, update(**kinds)) is None


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"update_id": "1"}', b'{"update_id": true}',
                                  b"[" * 100_000])
def test_a_body_that_is_not_an_update_is_refused_at_the_endpoint(body: bytes) -> None:
    with pytest.raises(NotTelegram):
        split_update(BOT, body)


@pytest.mark.parametrize("body", [
    update(message=message(text="")),  # a service message (a member joined, a pinned message...)
    update(message=message(location={"latitude": 52.5, "longitude": 13.4})),
    update(message={"message_id": 1, "chat": PRIVATE, "date": DATE, "text": "no sender"}),
    update(message=message(text="x", chat={"id": "not a number"})),
    update(message_reaction={"message_id": 1, "date": DATE, "new_reaction": []}),
], ids=["no-content", "location", "no-sender", "bad-chat", "reaction-without-chat"])
def test_an_update_that_cannot_be_stored_is_malformed_for_the_dead_letter_topic(body: bytes) -> None:
    with pytest.raises(MalformedTelegram):
        one(body)


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3),
                    max_leaves=10)
FIELDS = st.sampled_from(["message_id", "from", "chat", "date", "text", "caption", "photo", "document",
                          "reply_to_message", "edit_date", "id", "emoji", "type", "new_reaction"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["message", "edited_message", "message_reaction"]),
       st.dictionaries(FIELDS, JSON, max_size=6))
def test_a_record_of_any_shape_is_parsed_or_malformed_never_an_error(kind: str, body: dict[str, Any]) -> None:
    raw = json.dumps({"bot": BOT, "update": {"update_id": 1, kind: body}}).encode()
    with contextlib.suppress(MalformedMessage):
        parse_telegram(raw)
