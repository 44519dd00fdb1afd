import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_ingest.channels import PARSERS
from crm_ingest.domain.message import DeliveryStatus, InboundMessage, MalformedMessage, MediaRef, Reaction
from crm_ingest.domain.messenger import (
    MalformedMessaging,
    NotMessaging,
    parse_instagram,
    parse_messenger,
    split_messaging,
)
from crm_ingest.domain.meta import sign, signature_valid

PAGE = "104508412345678"
PSID = "6543210987654321"
IG_ACCOUNT = "17841400000000001"
IGSID = "2233445566778899"
MS = 1763884800123  # Meta's timestamps are milliseconds
AT = datetime.fromtimestamp(MS / 1000, UTC)


def page_delivery(*events: dict[str, Any], page: str = PAGE, obj: str = "page") -> bytes:
    entry = {"id": page, "time": MS, "messaging": list(events)}
    return json.dumps({"object": obj, "entry": [entry]}).encode()


def event(body: dict[str, Any], sender: str = PSID, recipient: str = PAGE) -> dict[str, Any]:
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": MS, **body}


def parsed(channel: str, body: bytes) -> list[InboundMessage | DeliveryStatus | Reaction]:
    parse = parse_messenger if channel == "messenger" else parse_instagram
    return [parse(item.payload) for item in split_messaging(channel, body).items]


# --- the signature (the one every Meta webhook has) ----------------------------------------

def test_a_delivery_signed_with_the_app_secret_is_authentic_and_nothing_else_is() -> None:
    secret = b"messenger-app-secret-0123456789abcdef"
    body = page_delivery(event({"message": {"mid": "m_1", "text": "hi"}}))
    assert signature_valid(secret, body, sign(secret, body))
    assert not signature_valid(secret, body + b" ", sign(secret, body))
    assert not signature_valid(b"x" * 32, body, sign(secret, body))
    assert not signature_valid(secret, body, None)


# --- messages -------------------------------------------------------------------------------

def test_a_messenger_text_message_is_from_the_psid_in_the_pages_conversation() -> None:
    body = page_delivery(event({"message": {"mid": "m_AbC123", "text": "Is the blue one in stock?",
                                            "reply_to": {"mid": "m_earlier"},
                                            "quick_reply": {"payload": "STOCK_BLUE"}}}))
    [message] = parsed("messenger", body)
    assert isinstance(message, InboundMessage)
    assert (message.channel, message.message_id, message.sender_kind, message.sender) == (
        "messenger", "m_AbC123", "messenger", PSID)
    assert message.text == "Is the blue one in stock?"
    assert message.sent_at == AT
    assert message.in_reply_to == "m_earlier"
    assert message.recipients == (PAGE,)
    assert message.conversation_id == f"{PAGE}:{PSID}"
    assert message.metadata == {"quick_reply_payload": "STOCK_BLUE"}
    assert message.kind == "message"


def test_attachments_become_media_references_by_their_url() -> None:
    attachments = [
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/photo.jpg"}},
        {"type": "file", "payload": {"url": "https://cdn.fbsbx.com/v/invoice.pdf"}},
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/sticker.png",
                                      "sticker_id": 369239263222822}},
        {"type": "location", "payload": {"coordinates": {"lat": 52.5, "long": 13.4}}},
    ]
    body = page_delivery(event({"message": {"mid": "m_2", "attachments": attachments}}))
    [message] = parsed("messenger", body)
    assert isinstance(message, InboundMessage)
    assert message.text == ""
    assert message.media == (
        MediaRef("image", "https://scontent.xx.fbcdn.net/v/photo.jpg", ""),
        MediaRef("document", "https://cdn.fbsbx.com/v/invoice.pdf", ""),
        MediaRef("sticker", "https://scontent.xx.fbcdn.net/v/sticker.png", ""),
    )


def test_an_instagram_message_is_from_the_igsid_with_its_story_share() -> None:
    body = page_delivery(event({"message": {"mid": "aWdfZAG1faXRlbTox", "text": "Love this",
                                            "attachments": [{"type": "story_mention",
                                                             "payload": {"url": "https://lookaside.fbsbx.com/s"}}]}},
                               sender=IGSID, recipient=IG_ACCOUNT),
                         page=IG_ACCOUNT, obj="instagram")
    [message] = parsed("instagram", body)
    assert isinstance(message, InboundMessage)
    assert (message.channel, message.sender_kind, message.sender) == ("instagram", "instagram", IGSID)
    assert message.conversation_id == f"{IG_ACCOUNT}:{IGSID}"
    assert message.media == (MediaRef("story_mention", "https://lookaside.fbsbx.com/s", ""),)


def test_a_postback_is_the_title_of_the_button_the_person_tapped() -> None:
    body = page_delivery(event({"postback": {"mid": "m_pb", "title": "Talk to a human",
                                             "payload": "HUMAN"}}))
    [message] = parsed("messenger", body)
    assert isinstance(message, InboundMessage)
    assert (message.message_id, message.text, message.metadata) == (
        "m_pb", "Talk to a human", {"postback_payload": "HUMAN"})


# --- statuses and reactions -----------------------------------------------------------------

def test_a_delivery_receipt_is_one_status_per_message_it_names() -> None:
    body = page_delivery(event({"delivery": {"mids": ["m_out1", "m_out2"], "watermark": MS}}))
    split = split_messaging("messenger", body)
    assert [(i.kind, i.account_id, i.person) for i in split.items] == [("status", PAGE, PSID)] * 2
    assert parsed("messenger", body) == [DeliveryStatus("messenger", "m_out1", "delivered", AT),
                                         DeliveryStatus("messenger", "m_out2", "delivered", AT)]


def test_an_instagram_read_names_its_message_and_a_messenger_watermark_is_only_acknowledged() -> None:
    instagram = page_delivery(event({"read": {"mid": "aWdfb3V0"}}, sender=IGSID, recipient=IG_ACCOUNT),
                              page=IG_ACCOUNT, obj="instagram")
    assert parsed("instagram", instagram) == [DeliveryStatus("instagram", "aWdfb3V0", "read", AT)]
    messenger = split_messaging("messenger", page_delivery(event({"read": {"watermark": MS}})))
    assert (messenger.items, messenger.ignored) == ((), 1)


def test_an_echo_of_our_own_message_is_a_sent_status_not_a_message() -> None:
    body = page_delivery(event({"message": {"mid": "m_ours", "is_echo": True, "app_id": 1517776481860111,
                                            "text": "We are open until 6"}}, sender=PAGE, recipient=PSID))
    [item] = split_messaging("messenger", body).items
    assert (item.kind, item.person) == ("status", PSID)  # keyed by the person, like their messages
    assert parse_messenger(item.payload) == DeliveryStatus("messenger", "m_ours", "sent", AT)


@pytest.mark.parametrize(("reaction", "emoji"), [
    ({"mid": "m_out1", "action": "react", "reaction": "love", "emoji": "\u2764\ufe0f"}, "\u2764\ufe0f"),
    ({"mid": "m_out1", "action": "react", "reaction": "like"}, "like"),
    ({"mid": "m_out1", "action": "unreact"}, ""),
], ids=["react", "name-only", "unreact"])
def test_a_reaction_is_recorded_on_the_message_it_is_about(reaction: dict[str, Any], emoji: str) -> None:
    [found] = parsed("messenger", page_delivery(event({"reaction": reaction})))
    assert found == Reaction("messenger", "m_out1", emoji, AT)


def test_other_events_standby_and_changes_are_counted_not_forwarded() -> None:
    body = json.dumps({"object": "page", "entry": [
        {"id": PAGE, "time": MS, "messaging": [event({"optin": {"ref": "x"}}),
                                                event({"message": {"mid": "m_gone", "is_deleted": True}})]},
        {"id": PAGE, "time": MS, "standby": [event({"message": {"mid": "m_s", "text": "x"}})]},
        {"id": PAGE, "time": MS, "changes": [{"field": "feed", "value": {}}]},
    ]}).encode()
    split = split_messaging("messenger", body)
    assert (split.items, split.ignored) == ((), 4)


# --- what is refused, where -----------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"not json", b"\xff", b"[" * 100_000, b"[]", b'{"object": "instagram", "entry": []}',
    b'{"object": "page"}', page_delivery(page="not-digits"),
    b'{"object": "page", "entry": [{"id": "1", "messaging": "x"}]}',
], ids=["text", "binary", "deep", "array", "other-object", "no-entry", "bad-page-id", "messaging-not-a-list"])
def test_a_body_that_is_not_a_messenger_delivery_is_refused_at_the_endpoint(body: bytes) -> None:
    with pytest.raises(NotMessaging):
        split_messaging("messenger", body)


@pytest.mark.parametrize("body", [
    event({"message": {"text": "no mid"}}),
    event({"message": {"mid": "m_1"}}),  # nothing in it (an unsupported message)
    event({"message": {"mid": "m_1", "text": "hi"}}, sender=""),
    event({"reaction": {"mid": "m_1", "action": "react"}}),
    event({"reaction": {"action": "unreact"}}),
    event({"delivery": {"mids": [], "watermark": 1}}),
    event({"something": "else"}),
], ids=["no-mid", "empty", "no-sender", "reaction-without-emoji", "reaction-without-mid",
        "delivery-without-mid", "unknown"])
def test_a_record_that_cannot_be_stored_is_malformed_for_the_dead_letter_topic(body: dict[str, Any]) -> None:
    record = json.dumps({"object": "page", "entry": [{"id": PAGE, "messaging": [body]}]}).encode()
    with pytest.raises(MalformedMessaging):
        parse_messenger(record)


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b'{"object": "page"}', b'{"entry": [1]}',
                                 b'{"object": "page", "entry": [{"id": "1", "messaging": [{}, {}]}]}',
                                 b'{"object": "instagram", "entry": [{"id": "1", "messaging": [{}]}]}'])
def test_records_of_any_other_shape_are_malformed_never_an_error(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        PARSERS["messenger"](raw)


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3),
                    max_leaves=10)
FIELDS = st.sampled_from(["sender", "recipient", "timestamp", "message", "postback", "delivery", "read",
                          "reaction", "mid", "text", "attachments", "is_echo", "mids", "emoji", "action"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["messenger", "instagram"]), st.dictionaries(FIELDS, JSON, max_size=6),
       st.dictionaries(FIELDS, JSON, max_size=4))
def test_an_event_of_any_shape_is_parsed_or_malformed_never_an_error(
        channel: str, outer: dict[str, Any], inner: dict[str, Any]) -> None:
    obj = "page" if channel == "messenger" else "instagram"
    for body in ({**outer, "message": inner}, {**outer, "reaction": inner}, {**outer, "delivery": inner},
                 outer):
        raw = json.dumps({"object": obj, "entry": [{"id": PAGE, "messaging": [body]}]}).encode()
        with contextlib.suppress(MalformedMessage):
            PARSERS[channel](raw)
        with contextlib.suppress(NotMessaging):
            split_messaging(channel, raw)
