"""WhatsApp Cloud API webhooks (Meta): the signature, splitting a delivery into one raw record
per message or status, and parsing one such record. Pure; parsing never raises anything but
NotWhatsApp (the endpoint's 422) or MalformedWhatsApp (the worker's dead letter)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    DeliveryStatus,
    InboundMessage,
    MalformedMessage,
    MediaRef,
    Reaction,
    clean_text,
    compact_json,
    json_long_text,
    json_text,
)
from crm_ingest.domain.meta import sign as sign  # every Meta webhook's signature
from crm_ingest.domain.meta import signature_valid as signature_valid

CHANNEL = "whatsapp"
# A business phone number's id in Meta's Graph API: digits.
PHONE_NUMBER_ID = r"^\d{1,32}$"
_PHONE_NUMBER_ID = re.compile(PHONE_NUMBER_ID)
# A WhatsApp user's wa_id: their phone number in E.164 without the "+".
_WA_ID = re.compile(r"^[1-9]\d{6,14}$")
_STATUS = re.compile(r"^[a-z_]{1,32}$")
_MEDIA_KINDS = frozenset({"image", "document", "audio", "video", "sticker"})
_KINDS = _MEDIA_KINDS | {"text", "button", "interactive"}

Object = dict[str, Any]


class NotWhatsApp(ValueError):
    """The body is not a WhatsApp Business Account webhook (the endpoint answers 422)."""


class MalformedWhatsApp(MalformedMessage):
    """The record cannot become an interaction or a status: it is dead-lettered with this reason."""


# --- the endpoint: one delivery -> one raw record per message or status ---------------------

@dataclass(frozen=True)
class WebhookItem:
    kind: Literal["message", "status"]
    phone_number_id: str  # the business number it came to: says which workspace it is for
    wa_id: str  # the person (a message's sender, a status's recipient), for the partition key
    payload: bytes  # the change's value with only this message (and its sender's contact) or status


@dataclass(frozen=True)
class WebhookDelivery:
    items: tuple[WebhookItem, ...]
    ignored: int  # changes of fields other than "messages", and values with neither (errors)


def split_webhook(body: bytes) -> WebhookDelivery:
    """Check the shape of a delivery (object, entry[].changes[].value.metadata) and split it.
    The messages and statuses themselves are checked by the worker, record by record."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise NotWhatsApp("the body is not JSON") from exc
    if not isinstance(data, dict) or data.get("object") != "whatsapp_business_account":
        raise NotWhatsApp('"object" is not "whatsapp_business_account"')
    if not isinstance(data.get("entry"), list):
        raise NotWhatsApp('"entry" is not a list')
    items: list[WebhookItem] = []
    ignored = 0
    for entry in _objects(data, "entry"):
        for change in _objects(entry, "changes"):
            value = change.get("value")
            if change.get("field") != "messages":
                ignored += 1
                continue
            if not isinstance(value, dict):
                raise NotWhatsApp('a "messages" change has no value object')
            metadata = value.get("metadata")
            phone_number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if not isinstance(phone_number_id, str) or not _PHONE_NUMBER_ID.match(phone_number_id):
                raise NotWhatsApp("a change has no metadata.phone_number_id")
            common = {"messaging_product": value.get("messaging_product"), "metadata": metadata}
            contacts = _objects(value, "contacts")
            messages, statuses = _objects(value, "messages"), _objects(value, "statuses")
            if not messages and not statuses:
                ignored += 1
            for message in messages:
                sender = json_text(message.get("from"))[:64]
                own = [c for c in contacts if c.get("wa_id") == sender]
                items.append(WebhookItem("message", phone_number_id, sender,
                                         compact_json({**common, "contacts": own, "messages": [message]})))
            for status in statuses:
                recipient = json_text(status.get("recipient_id"))[:64]
                items.append(WebhookItem("status", phone_number_id, recipient,
                                         compact_json({**common, "statuses": [status]})))
    return WebhookDelivery(tuple(items), ignored)


def _objects(parent: Object, key: str) -> list[Object]:
    found = parent.get(key)
    if found is None:
        return []
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise NotWhatsApp(f'"{key}" is not a list of objects')
    return found



# --- the worker: one raw record -> an inbound message or a delivery status -----------------

def parse_whatsapp(raw: bytes) -> InboundMessage | DeliveryStatus | Reaction:
    """One record as split_webhook made it: a change value holding one message or one status."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedWhatsApp("not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedWhatsApp("not a WhatsApp change value")
    metadata = value.get("metadata")
    messages, statuses = value.get("messages"), value.get("statuses")
    if isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict):
        if messages[0].get("type") == "reaction":
            return _reaction(messages[0])
        return _message(messages[0], metadata if isinstance(metadata, dict) else {},
                        value.get("contacts"))
    if isinstance(statuses, list) and len(statuses) == 1 and isinstance(statuses[0], dict):
        return _status(statuses[0])
    raise MalformedWhatsApp("neither one message nor one status")


def _message(message: Object, metadata: Object, contacts: object) -> InboundMessage:
    message_id = _required_id(message, "a message")
    wa_id = message.get("from")
    if not isinstance(wa_id, str) or not _WA_ID.match(wa_id):
        raise MalformedWhatsApp('the sender ("from") is not a WhatsApp phone number')
    text, media = _content(message)
    context = message.get("context")
    phone_number_id = json_text(metadata.get("phone_number_id"))
    business = re.sub(r"\D", "", json_text(metadata.get("display_phone_number")))
    return InboundMessage(
        channel=CHANNEL,
        message_id=message_id,
        sender_kind=CHANNEL,
        sender=f"+{wa_id}",
        sender_name=_profile_name(contacts, wa_id),
        text=text,
        sent_at=_timestamp(message.get("timestamp")),
        recipients=(f"+{business}",) if _WA_ID.match(business) else (),
        in_reply_to=json_text(context.get("id"))[:MAX_ID_CHARS] if isinstance(context, dict) else "",
        # One conversation per business number and person: chat threads by it.
        conversation_id=f"{phone_number_id}:{wa_id}" if phone_number_id else "",
        media=media,
    )


def _content(message: Object) -> tuple[str, tuple[MediaRef, ...]]:
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise MalformedWhatsApp(f"unsupported WhatsApp message type {_label(kind)}")
    body = message.get(kind)
    if not isinstance(body, dict):
        raise MalformedWhatsApp(f"a {kind} message without its {kind} object")
    if kind == "text":
        return json_long_text(body.get("body")), ()
    if kind == "button":  # a quick-reply button of a template message
        return json_long_text(body.get("text")), ()
    if kind == "interactive":  # a reply button or a list row of an interactive message
        reply = body.get(body.get("type")) if isinstance(body.get("type"), str) else None
        return (json_long_text(reply.get("title")) if isinstance(reply, dict) else ""), ()
    media_id = _required_id(body, f"{kind} media")
    caption = json_long_text(body.get("caption"))
    return caption, (MediaRef(
        kind=kind, provider_id=media_id, mime_type=json_text(body.get("mime_type"))[:255],
        caption=caption, filename=json_text(body.get("filename"))[:255],
        sha256=json_text(body.get("sha256"))[:128],
    ),)


def _reaction(message: Object) -> Reaction:
    """An emoji on an earlier message (ours or theirs); an empty emoji takes it back."""
    body = message.get("reaction")
    if not isinstance(body, dict):
        raise MalformedWhatsApp("a reaction message without its reaction object")
    target = json_text(body.get("message_id"))
    if not target:
        raise MalformedWhatsApp("a reaction without the message_id it reacts to")
    return Reaction(CHANNEL, target[:MAX_ID_CHARS], json_text(body.get("emoji"))[:32],
                    _timestamp(message.get("timestamp")))


def _status(status: Object) -> DeliveryStatus:
    message_id = _required_id(status, "a status")
    name = status.get("status")
    if not isinstance(name, str) or not _STATUS.match(name):
        raise MalformedWhatsApp("a status without a known status name")
    errors = status.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    code = str(first.get("code", ""))[:32] if isinstance(first, dict) else ""
    return DeliveryStatus(CHANNEL, message_id, name,
                          _timestamp(status.get("timestamp")), clean_text(code))


def _required_id(item: Object, what: str) -> str:
    found = json_text(item.get("id"))
    if not found:
        raise MalformedWhatsApp(f"{what} without an id")
    return found[:MAX_ID_CHARS]


def _profile_name(contacts: object, wa_id: str) -> str:
    for contact in contacts if isinstance(contacts, list) else ():
        if isinstance(contact, dict) and contact.get("wa_id") == wa_id:
            profile = contact.get("profile")
            return json_text(profile.get("name"))[:MAX_NAME_CHARS] if isinstance(profile, dict) else ""
    return ""


def _timestamp(value: object) -> datetime | None:
    """Meta's timestamps are Unix seconds as strings."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None




def _label(kind: object) -> str:
    return repr(kind[:40]) if isinstance(kind, str) else "untyped"
