"""Messenger and Instagram messaging webhooks (Meta's Messenger Platform): splitting a delivery
into one raw record per message, status or reaction, and parsing one such record. Both
channels have the same form (``entry[].messaging[]`` events), told apart by ``object``: "page"
for Messenger, "instagram" for Instagram. Pure; parsing never raises anything but NotMessaging
(the endpoint's 422) or MalformedMessaging (the worker's dead letter)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    DeliveryStatus,
    InboundMessage,
    MalformedMessage,
    MediaRef,
    Reaction,
    compact_json,
    json_long_text,
    json_text,
)
from crm_ingest.domain.meta import GRAPH_ID

# The channel -> the delivery's "object".
OBJECTS = {"messenger": "page", "instagram": "instagram"}
_GRAPH_ID = re.compile(GRAPH_ID)
# A person as a Page or an Instagram account sees them (PSID, IGSID): Meta sends digits.
_PERSON_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# Meta's attachment types -> MediaRef kinds; other types with a URL keep their own name.
_MEDIA_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "document"}
_MAX_URL_CHARS = 4096
_MAX_PAYLOAD_CHARS = 1000

Object = dict[str, Any]
Parsed = InboundMessage | DeliveryStatus | Reaction


class NotMessaging(ValueError):
    """The body is not a Messenger (or Instagram) webhook delivery (the endpoint answers 422)."""


class MalformedMessaging(MalformedMessage):
    """The record cannot become an interaction, a status or a reaction: it is dead-lettered."""


# --- the endpoint: one delivery -> one raw record per message, status or reaction ------------

@dataclass(frozen=True)
class MessagingItem:
    kind: Literal["message", "status", "reaction"]
    account_id: str  # the Page or Instagram account (the entry's id): says which workspace
    person: str  # the PSID or IGSID the event is about, for the partition key
    payload: bytes  # the delivery narrowed to this entry and this one event


@dataclass(frozen=True)
class MessagingDelivery:
    items: tuple[MessagingItem, ...]
    ignored: int  # events of other kinds (postbacks aside), standby and changes, watermark-only reads


def split_messaging(channel: str, body: bytes) -> MessagingDelivery:
    """Check the shape of a delivery (object, entry[].id, entry[].messaging[]) and split it:
    one record per message, per message id of a delivery receipt, per read of one message and
    per reaction; an echo of a message the Page sent is a status ("sent"). Events themselves
    are checked by the worker, record by record."""
    expected = OBJECTS[channel]
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise NotMessaging("the body is not JSON") from exc
    if not isinstance(data, dict) or data.get("object") != expected:
        raise NotMessaging(f'"object" is not "{expected}"')
    if not isinstance(data.get("entry"), list):
        raise NotMessaging('"entry" is not a list')
    items: list[MessagingItem] = []
    ignored = 0
    for entry in _objects(data, "entry"):
        account = entry.get("id")
        if not isinstance(account, str) or not _GRAPH_ID.match(account):
            raise NotMessaging("an entry has no Page or Instagram account id")
        events = _objects(entry, "messaging")
        others = sum(len(entry[key]) for key in ("standby", "changes") if isinstance(entry.get(key), list))
        ignored += others if events or others else 1
        for event in events:
            split = _split_event(event)
            ignored += not split
            for kind, person, narrowed in split:
                record = {"object": expected,
                          "entry": [{"id": account, "time": entry.get("time"), "messaging": [narrowed]}]}
                items.append(MessagingItem(kind, account, person[:128], compact_json(record)))
    return MessagingDelivery(tuple(items), ignored)


def _split_event(event: Object) -> list[tuple[Literal["message", "status", "reaction"], str, Object]]:
    sender, recipient = _party(event, "sender"), _party(event, "recipient")
    message = event.get("message")
    if isinstance(message, dict):
        if message.get("is_echo") is True:  # our own message, as Meta sent it: a status
            return [("status", recipient, event)]
        if message.get("is_deleted") is True:  # Instagram: the person unsent a message
            return []
        return [("message", sender, event)]
    if isinstance(event.get("postback"), dict):  # a button the person tapped
        return [("message", sender, event)]
    delivery = event.get("delivery")
    if isinstance(delivery, dict):
        mids = delivery.get("mids")
        return [("status", sender, {**event, "delivery": {**delivery, "mids": [mid]}})
                for mid in (mids if isinstance(mids, list) else []) if isinstance(mid, str)]
    read = event.get("read")
    if isinstance(read, dict):
        # Instagram names the message read; Messenger only gives a watermark (every message
        # before it was read), which names none of ours: acknowledged, not recorded.
        return [("status", sender, event)] if isinstance(read.get("mid"), str) else []
    if isinstance(event.get("reaction"), dict):
        return [("reaction", sender, event)]
    return []


def _party(event: Object, key: str) -> str:
    party = event.get(key)
    found = party.get("id") if isinstance(party, dict) else None
    return found if isinstance(found, str) else ""


def _objects(parent: Object, key: str) -> list[Object]:
    found = parent.get(key)
    if found is None:
        return []
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise NotMessaging(f'"{key}" is not a list of objects')
    return found



# --- the worker: one raw record -> a message, a delivery status or a reaction ----------------

def parse_messenger(raw: bytes) -> Parsed:
    return _parse("messenger", raw)


def parse_instagram(raw: bytes) -> Parsed:
    return _parse("instagram", raw)


def _parse(channel: str, raw: bytes) -> Parsed:
    """One record as split_messaging made it: one entry holding one event."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessaging("not JSON") from exc
    entry = _only(data.get("entry")) if isinstance(data, dict) else None
    event = _only(entry.get("messaging")) if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(event, dict) or data.get("object") != OBJECTS[channel]:
        raise MalformedMessaging(f"not one {channel} messaging event")
    account = entry.get("id")
    if not isinstance(account, str) or not _GRAPH_ID.match(account):
        raise MalformedMessaging("no Page or Instagram account id")
    at = _millis(event.get("timestamp"))
    message, postback = event.get("message"), event.get("postback")
    if isinstance(message, dict) and message.get("is_echo") is True:
        return DeliveryStatus(channel, _mid(message, "an echo"), "sent", at)
    if isinstance(message, dict) or isinstance(postback, dict):
        return _message(channel, account, event, message, postback, at)
    delivery, read, reaction = event.get("delivery"), event.get("read"), event.get("reaction")
    if isinstance(delivery, dict):
        return DeliveryStatus(channel, _mid({"mid": _only(delivery.get("mids"))}, "a delivery"),
                              "delivered", at)
    if isinstance(read, dict):
        return DeliveryStatus(channel, _mid(read, "a read"), "read", at)
    if isinstance(reaction, dict):
        return _reaction(channel, reaction, at)
    raise MalformedMessaging("neither a message, a status nor a reaction")


def _message(channel: str, account: str, event: Object, message: object, postback: object,
             at: datetime | None) -> InboundMessage:
    person = _party(event, "sender")
    if not _PERSON_ID.match(person):
        raise MalformedMessaging("the sender has no id")
    metadata: dict[str, str] = {}
    media: tuple[MediaRef, ...] = ()
    in_reply_to = ""
    if isinstance(message, dict):
        mid = _mid(message, "a message")
        text = json_long_text(message.get("text"))
        media = _attachments(message.get("attachments"))
        reply_to = message.get("reply_to")
        if isinstance(reply_to, dict):
            in_reply_to = json_text(reply_to.get("mid"))[:MAX_ID_CHARS]
        quick_reply = message.get("quick_reply")
        if isinstance(quick_reply, dict) and json_text(quick_reply.get("payload")):
            metadata["quick_reply_payload"] = json_text(quick_reply.get("payload"))[:_MAX_PAYLOAD_CHARS]
        if not text and not media:
            raise MalformedMessaging("a message with neither text nor an attachment with a URL")
    elif isinstance(postback, dict):  # the title of the button the person tapped is what they "said"
        mid = _mid(postback, "a postback")
        text = json_long_text(postback.get("title"))
        if json_text(postback.get("payload")):
            metadata["postback_payload"] = json_text(postback.get("payload"))[:_MAX_PAYLOAD_CHARS]
    else:
        raise MalformedMessaging("neither a message nor a postback")
    return InboundMessage(
        channel=channel,
        message_id=mid,
        sender_kind=channel,  # a PSID is a Messenger identity, an IGSID an Instagram one
        sender=person,
        sender_name="",  # not in the webhook: the Graph API has it
        text=text,
        sent_at=at,
        recipients=(account,),
        in_reply_to=in_reply_to,
        # One conversation per Page (or account) and person: a reply goes from that Page.
        conversation_id=f"{account}:{person}",
        media=media,
        metadata=metadata,
    )


def _attachments(value: object) -> tuple[MediaRef, ...]:
    found: list[MediaRef] = []
    for attachment in value if isinstance(value, list) else ():
        if not isinstance(attachment, dict):
            continue
        payload = attachment.get("payload")
        url = json_text(payload.get("url")) if isinstance(payload, dict) else ""
        kind = json_text(attachment.get("type"))[:32]
        if not url or not kind:
            continue  # a location, a template without a link: nothing to fetch
        if kind == "image" and isinstance(payload, dict) and payload.get("sticker_id") is not None:
            kind = "sticker"
        found.append(MediaRef(kind=_MEDIA_KINDS.get(kind, kind), provider_id=url[:_MAX_URL_CHARS],
                              mime_type=""))
    return tuple(found)


def _reaction(channel: str, reaction: Object, at: datetime | None) -> Reaction:
    mid = _mid(reaction, "a reaction")
    action = reaction.get("action")
    if action == "unreact":
        return Reaction(channel, mid, "", at)
    emoji = json_text(reaction.get("emoji")) or json_text(reaction.get("reaction"))  # "love", "like", ...
    if action != "react" or not emoji:
        raise MalformedMessaging("a reaction that is neither a react with an emoji nor an unreact")
    return Reaction(channel, mid, emoji[:32], at)


def _only(value: object) -> object:
    """The one item of a list of one, else None."""
    return value[0] if isinstance(value, list) and len(value) == 1 else None


def _mid(item: object, what: str) -> str:
    found = json_text(item.get("mid")) if isinstance(item, dict) else ""
    if not found:
        raise MalformedMessaging(f"{what} without a message id")
    return found[:MAX_ID_CHARS]


def _millis(value: object) -> datetime | None:
    """Messenger's timestamps are Unix milliseconds."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


