import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from crm_ingest.domain.interaction import inbound_interaction, interaction_id
from crm_ingest.domain.message import DeliveryStatus, InboundMessage, MediaRef, Reaction
from crm_ingest.domain.whatsapp import (
    MalformedWhatsApp,
    NotWhatsApp,
    parse_whatsapp,
    sign,
    signature_valid,
    split_webhook,
)
from crm_ingest.settings import Settings
from crmkit.settings import InfraSettings

SECRET = b"0123456789abcdef0123456789abcdef"
PHONE_ID = "106540352242922"
RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def delivery(*values: dict[str, Any], field: str = "messages") -> bytes:
    changes = [{"field": field, "value": value} for value in values]
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": changes}]}).encode()


def value(messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None,
          phone_id: str = PHONE_ID) -> dict[str, Any]:
    found: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id},
    }
    if messages is not None:
        found["contacts"] = [{"profile": {"name": "Ada Lovelace"}, "wa_id": "16505551234"},
                             {"profile": {"name": "Grace Hopper"}, "wa_id": "4915112345678"}]
        found["messages"] = messages
    if statuses is not None:
        found["statuses"] = statuses
    return found


def text(body: str = "Where is my order?", sender: str = "16505551234", wamid: str = "wamid.A1",
         **more: Any) -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": "1763884800", "type": "text",
            "text": {"body": body}, **more}


def one(message: dict[str, Any]) -> InboundMessage:
    """A message as the worker gets it: split out of a delivery, then parsed."""
    [item] = split_webhook(delivery(value([message]))).items
    parsed = parse_whatsapp(item.payload)
    assert isinstance(parsed, InboundMessage)
    return parsed


# --- the signature ----------------------------------------------------------------------------

def test_a_body_signed_with_the_app_secret_is_authentic() -> None:
    body = delivery(value([text()]))
    assert signature_valid(SECRET, body, sign(SECRET, body))
    assert signature_valid(SECRET, body, sign(SECRET, body).upper().replace("SHA256=", "sha256="))


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=" + "0" * 40, "0" * 64, "sha256=" + "0" * 64, "sha256=zz", "sha256=ä"],
    ids=["missing", "empty", "no-digest", "sha1", "no-prefix", "wrong", "not-hex", "not-ascii"],
)
def test_a_missing_or_wrong_signature_is_refused(header: str | None) -> None:
    assert not signature_valid(SECRET, b"{}", header)


def test_a_signature_holds_only_for_its_body_and_its_secret() -> None:
    body = delivery(value([text()]))
    signature = sign(SECRET, body)
    assert not signature_valid(SECRET, body + b" ", signature)
    assert not signature_valid(b"another-secret-another-secret-xx", body, signature)


# --- the endpoint's split -------------------------------------------------------------------

def test_a_delivery_becomes_one_record_per_message_and_status_with_its_business_number() -> None:
    body = delivery(
        value([text(wamid="wamid.1"), text(sender="4915112345678", wamid="wamid.2")]),
        value(statuses=[{"id": "wamid.out", "status": "read", "timestamp": "1763884900",
                         "recipient_id": "16505551234"}], phone_id="999"),
    )
    split = split_webhook(body)
    assert [(i.kind, i.phone_number_id, i.wa_id) for i in split.items] == [
        ("message", PHONE_ID, "16505551234"), ("message", PHONE_ID, "4915112345678"),
        ("status", "999", "16505551234")]
    second = json.loads(split.items[1].payload)
    assert second["messages"] == [text(sender="4915112345678", wamid="wamid.2")]
    assert second["contacts"] == [{"profile": {"name": "Grace Hopper"}, "wa_id": "4915112345678"}]
    assert second["metadata"]["phone_number_id"] == PHONE_ID
    assert split.ignored == 0


def test_other_webhook_fields_and_error_only_changes_are_counted_not_forwarded() -> None:
    split = split_webhook(delivery(value(), {"event": "VERIFIED_ACCOUNT"}, field="account_update"))
    assert split.items == ()
    assert split.ignored == 2
    assert split_webhook(delivery(value())).ignored == 1  # "messages" with only errors


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe", b"[" * 100_000, b"[]", b'{"object": "page", "entry": []}',
     b'{"object": "whatsapp_business_account"}',
     b'{"object": "whatsapp_business_account", "entry": [{"changes": "x"}]}',
     delivery({"metadata": {}}), delivery({"metadata": {"phone_number_id": "+1 555"}}),
     delivery(value(messages=["hello"]))],  # type: ignore[list-item]
    ids=["text", "binary", "deep", "array", "other-object", "no-entry", "changes-not-a-list",
         "no-phone-number-id", "bad-phone-number-id", "message-not-an-object"],
)
def test_a_body_that_is_not_a_whatsapp_delivery_is_refused(body: bytes) -> None:
    with pytest.raises(NotWhatsApp):
        split_webhook(body)


# --- the worker's parse ---------------------------------------------------------------------

def test_a_text_message_has_its_sender_in_e164_its_profile_name_and_its_time() -> None:
    message = one(text(context={"from": "15550783881", "id": "wamid.earlier"}))
    assert message.channel == "whatsapp"
    assert message.message_id == "wamid.A1"
    assert (message.sender_kind, message.sender, message.sender_name) == ("whatsapp", "+16505551234",
                                                                          "Ada Lovelace")
    assert message.text == "Where is my order?"
    assert message.sent_at == datetime(2025, 11, 23, 8, 0, tzinfo=UTC)
    assert message.in_reply_to == "wamid.earlier"
    assert message.recipients == ("+15550783881",)
    assert message.conversation_id == f"{PHONE_ID}:16505551234"
    assert message.media == ()


@pytest.mark.parametrize("kind", ["image", "document", "audio", "video", "sticker"])
def test_media_become_references_with_their_caption_as_the_text(kind: str) -> None:
    media = {"id": "1482934718947", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "The box"}
    if kind == "document":
        media["filename"] = "invoice.pdf"
    message = one({"from": "16505551234", "id": "wamid.M", "timestamp": "1763884800", "type": kind,
                   kind: media})
    assert message.media == (MediaRef(kind=kind, provider_id="1482934718947", mime_type="image/jpeg",
                                      caption="The box", filename=media.get("filename", ""),
                                      sha256="abc="),)
    assert message.text == "The box"


def test_button_and_interactive_replies_keep_what_the_person_chose() -> None:
    button = one({"from": "16505551234", "id": "wamid.B", "type": "button",
                  "button": {"payload": "yes", "text": "Yes, please"}})
    listed = one({"from": "16505551234", "id": "wamid.L", "type": "interactive",
                  "interactive": {"type": "list_reply", "list_reply": {"id": "r1", "title": "Returns"}}})
    assert (button.text, listed.text) == ("Yes, please", "Returns")


def test_untrusted_text_comes_out_clean_and_bounded() -> None:
    message = one(text(body="a\x00b \ud800 " + "x" * 200_000))
    assert message.text.startswith("ab \ufffd ")
    assert len(message.text) == 100_000
    message.text.encode("utf-8")


def test_a_missing_name_or_time_never_places_the_message_after_its_arrival() -> None:
    message = one({"from": "4915112345678", "id": "wamid.T", "timestamp": "99999999999999999999",
                   "type": "text", "text": {"body": "hi"}})
    assert message.sent_at is None
    assert message.sender_name == "Grace Hopper"
    item = inbound_interaction("ws", "c1", message, RECEIVED)
    assert item.occurred_at == RECEIVED
    assert item.id == interaction_id("ws", "whatsapp", "wamid.T")


def test_the_same_wamid_always_gets_the_same_interaction_id() -> None:
    first = inbound_interaction("ws", "c1", one(text()), RECEIVED)
    again = inbound_interaction("ws", "c1", one(text()), datetime(2026, 11, 24, tzinfo=UTC))
    assert first.id == again.id
    assert inbound_interaction("other", "c1", one(text()), RECEIVED).id != first.id


@pytest.mark.parametrize(
    ("message", "reason"),
    [({"id": "w", "type": "text", "text": {"body": "x"}}, "not a WhatsApp phone number"),
     ({"from": "+16505551234", "id": "w", "type": "text", "text": {"body": "x"}}, "not a WhatsApp phone"),
     ({"from": "16505551234", "type": "text", "text": {"body": "x"}}, "without an id"),
     ({"from": "16505551234", "id": "w", "type": "reaction", "reaction": {"emoji": "+1"}},
      "a reaction without the message_id it reacts to"),
     ({"from": "16505551234", "id": "w", "type": ["text"]}, "unsupported WhatsApp message type untyped"),
     ({"from": "16505551234", "id": "w", "type": "text"}, "without its text object"),
     ({"from": "16505551234", "id": "w", "type": "image", "image": {"caption": "x"}},
      "image media without an id")],
    ids=["no-sender", "plus-sender", "no-id", "reaction", "odd-type", "no-text", "no-media-id"],
)
def test_messages_that_cannot_become_interactions_are_malformed(message: dict[str, Any], reason: str) -> None:
    [item] = split_webhook(delivery(value([message]))).items
    with pytest.raises(MalformedWhatsApp, match=reason):
        parse_whatsapp(item.payload)


@pytest.mark.parametrize("raw", [b"", b"nope", b"[]", b"{}", b'{"messages": [{}, {}]}'],
                         ids=["empty", "text", "array", "nothing", "two"])
def test_a_record_that_is_not_one_message_or_status_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedWhatsApp):
        parse_whatsapp(raw)


def test_a_status_is_news_about_one_of_our_messages_not_a_message() -> None:
    failed = {"id": "wamid.out", "status": "failed", "timestamp": "1763884900", "recipient_id": "16505551234",
              "errors": [{"code": 131026, "title": "Message undeliverable"}]}
    [item] = split_webhook(delivery(value(statuses=[failed]))).items
    assert parse_whatsapp(item.payload) == DeliveryStatus(
        "whatsapp", "wamid.out", "failed", datetime(2025, 11, 23, 8, 1, 40, tzinfo=UTC), "131026")
    for bad in ({"status": "read"}, {"id": "wamid.out", "status": "Read!"}):
        [item] = split_webhook(delivery(value(statuses=[bad]))).items
        with pytest.raises(MalformedWhatsApp):
            parse_whatsapp(item.payload)


# --- configuration --------------------------------------------------------------------------

def settings(**values: Any) -> Settings:
    return Settings(infra=InfraSettings(), **values)  # type: ignore[call-arg]


CONFIGURED = {"whatsapp_accounts": {PHONE_ID: {"workspace_id": "acme"}},
              "whatsapp_app_secret": SECRET.decode(),
              "whatsapp_verify_token": "a-verify-token-of-enough-length"}


def test_the_channel_is_off_until_configured_and_maps_numbers_to_workspaces() -> None:
    assert settings().whatsapp is None
    channel = settings(**CONFIGURED).whatsapp
    assert channel is not None
    assert {number: a.workspace_id for number, a in channel.accounts.items()} == {PHONE_ID: "acme"}
    assert channel.app_secret == SECRET
    assert "a-verify-token" not in repr(settings(**CONFIGURED))


@pytest.mark.parametrize(
    "change",
    [{"whatsapp_app_secret": None}, {"whatsapp_verify_token": None}, {"whatsapp_accounts": {}},
     {"whatsapp_app_secret": "short"}, {"whatsapp_verify_token": "changeme"},
     {"whatsapp_accounts": {"+15550783881": {"workspace_id": "acme"}}},
     {"whatsapp_accounts": {PHONE_ID: {"workspace_id": ""}}}],
    ids=["no-secret", "no-token", "no-accounts", "weak-secret", "weak-token", "phone-not-id", "no-workspace"],
)
def test_a_half_or_weak_configuration_stops_the_service_at_start(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(**{**CONFIGURED, **change})


def test_a_reaction_is_news_about_an_earlier_message_not_a_message() -> None:
    reaction = {"from": "16505551234", "id": "wamid.r", "timestamp": "1763884900", "type": "reaction",
                "reaction": {"message_id": "wamid.earlier", "emoji": "\U0001f44d"}}
    [item] = split_webhook(delivery(value([reaction]))).items
    assert parse_whatsapp(item.payload) == Reaction(
        "whatsapp", "wamid.earlier", "\U0001f44d", datetime.fromtimestamp(1763884900, UTC))
