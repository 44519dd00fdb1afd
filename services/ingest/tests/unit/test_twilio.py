import base64
import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from crm_ingest.domain.message import DeliveryStatus, InboundMessage, MediaRef
from crm_ingest.domain.twilio import (
    MalformedSms,
    NotTwilio,
    classify,
    parse_form,
    parse_sms,
    sign,
    signature_valid,
)

TOKEN = b"0123456789abcdef0123456789abcdef"  # an auth token is 32 hex digits
URL = "https://crm.example.com/v1/channels/sms/webhook"
OURS, PERSON = "+14155550100", "+16505551234"


def inbound(**more: str) -> list[tuple[str, str]]:
    """An incoming SMS as Twilio posts it (its Messaging webhook's parameters)."""
    params = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
              "NumMedia": "0", "ToCity": "SAN FRANCISCO", "FromZip": "94301",
              "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "FromState": "CA", "SmsStatus": "received",
              "FromCity": "PALO ALTO", "Body": "Is my order shipped?",
              "FromCountry": "US", "To": OURS, "MessagingServiceSid": "MG4ea4f24d5f0fbb8ac9d13e2e1bdb4bf4",
              "ToZip": "94105", "NumSegments": "1", "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
              "AccountSid": "AC0123456789abcdef0123456789abcdef", "From": PERSON, "ApiVersion": "2010-04-01"}
    params.update(more)
    return list(params.items())


def status(name: str, **more: str) -> list[tuple[str, str]]:
    """A status callback about a message we sent (From is our number)."""
    params = {"SmsSid": "SMout", "SmsStatus": name, "MessageStatus": name, "To": PERSON,
              "MessagingServiceSid": "MG4ea4", "MessageSid": "SMout",
              "AccountSid": "AC0123456789abcdef0123456789abcdef", "From": OURS, "ApiVersion": "2010-04-01",
              **more}
    return list(params.items())


def form(params: list[tuple[str, str]]) -> bytes:
    return urlencode(params).encode()


# --- the signature --------------------------------------------------------------------------

def test_the_signature_is_twilios_documented_example() -> None:
    # From Twilio's security documentation: this token, URL and parameters give this signature.
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"),
              ("From", "+14158675310"), ("To", "+18005551212")]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert sign(b"12345", url, params) == "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_the_signature_is_the_hmac_sha1_of_the_url_and_the_sorted_parameters() -> None:
    params = [("To", OURS), ("Body", "a+b=c & d"), ("From", PERSON), ("MessageSid", "SM1")]
    # Computed here by hand, from the rule, not by the code under test.
    signed = f"{URL}Bodya+b=c & dFrom{PERSON}MessageSidSM1To{OURS}"
    expected = base64.b64encode(hmac.new(TOKEN, signed.encode(), hashlib.sha1).digest()).decode()
    assert sign(TOKEN, URL, params) == expected
    assert signature_valid(TOKEN, URL, parse_form(form(params)), expected)


def test_a_signature_holds_only_for_its_url_its_parameters_and_its_token() -> None:
    params = inbound()
    signature = sign(TOKEN, URL, params)
    assert signature_valid(TOKEN, URL, params, signature)
    assert not signature_valid(TOKEN, URL + "?x=1", params, signature)
    assert not signature_valid(TOKEN, "http://10.0.0.7:8005/v1/channels/sms/webhook", params, signature)
    assert not signature_valid(TOKEN, URL, [*params, ("Extra", "1")], signature)
    assert not signature_valid(b"f" * 32, URL, params, signature)
    for header in (None, "", "x", signature.lower()):
        assert not signature_valid(TOKEN, URL, params, header)


def test_the_default_port_may_be_written_out_or_left_out() -> None:
    params = inbound()
    assert signature_valid(TOKEN, URL, params, sign(TOKEN, "https://crm.example.com:443/v1/channels/sms/webhook",
                                                    params))
    assert signature_valid(TOKEN, "https://crm.example.com:443/v1/channels/sms/webhook", params,
                           sign(TOKEN, URL, params))
    assert not signature_valid(TOKEN, URL, params, sign(TOKEN, "https://crm.example.com:8443/v1/channels/sms/webhook",
                                                        params))


# --- the worker's parse ---------------------------------------------------------------------

def test_an_incoming_sms_is_from_a_phone_identity_in_our_numbers_conversation() -> None:
    params = inbound()
    assert classify(params).kind == "message"
    assert (classify(params).number, classify(params).person) == (OURS, PERSON)
    message = parse_sms(form(params))
    assert isinstance(message, InboundMessage)
    assert (message.channel, message.message_id, message.sender_kind, message.sender) == (
        "sms", "SM1f0e8ae6ade43cb3c0ce4525424e404f", "phone", PERSON)
    assert message.text == "Is my order shipped?"
    assert message.recipients == (OURS,)
    assert message.conversation_id == f"{OURS}:{PERSON}"
    assert message.sent_at is None  # Twilio gives no time: the time it arrived is used


def test_an_mms_keeps_its_media_urls_and_types() -> None:
    media = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/"
    params = inbound(NumMedia="2", Body="", MediaUrl0=media + "ME1", MediaContentType0="image/jpeg",
                     MediaUrl1=media + "ME2", MediaContentType1="application/pdf")
    message = parse_sms(form(params))
    assert isinstance(message, InboundMessage)
    assert message.media == (MediaRef("image", media + "ME1", "image/jpeg"),
                             MediaRef("document", media + "ME2", "application/pdf"))


@pytest.mark.parametrize(("name", "more", "error"), [
    ("delivered", {}, ""), ("undelivered", {"ErrorCode": "30003"}, "30003"),
    ("failed", {"ErrorCode": "30008"}, "30008"), ("sent", {}, "")])
def test_a_status_callback_is_a_status_of_our_message_routed_by_our_number(
        name: str, more: dict[str, str], error: str) -> None:
    params = status(name, **more)
    item = classify(params)
    assert (item.kind, item.number, item.person) == ("status", OURS, PERSON)
    assert parse_sms(form(params)) == DeliveryStatus("sms", "SMout", name, None, error)


@pytest.mark.parametrize("params", [
    inbound(From="ACME"),  # an alphanumeric sender id is not a phone identity
    inbound(From="whatsapp:+16505551234"),
    inbound(Body=""),
    [(k, v) for k, v in inbound() if k not in ("MessageSid", "SmsSid", "SmsMessageSid")],
    status("Not A Status!"),
], ids=["alphanumeric-sender", "whatsapp-sender", "empty", "no-sid", "bad-status"])
def test_a_request_that_cannot_be_stored_is_malformed_for_the_dead_letter_topic(
        params: list[tuple[str, str]]) -> None:
    with pytest.raises(MalformedSms):
        parse_sms(form(params))


@pytest.mark.parametrize("body", [b"\xff\xfe=1", b"a=%ff", b"&".join([b"a=1"] * 1001)],
                         ids=["not-utf8", "bad-escape", "too-many-fields"])
def test_a_body_that_is_not_a_form_is_refused_at_the_endpoint(body: bytes) -> None:
    with pytest.raises(NotTwilio):
        parse_form(body)
    with pytest.raises(MalformedSms):
        parse_sms(body)


def test_a_form_without_a_message_sid_is_not_a_twilio_request() -> None:
    with pytest.raises(NotTwilio):
        classify([("Body", "hi")])
