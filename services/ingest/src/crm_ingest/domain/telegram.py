"""Telegram Bot API webhooks: the secret token, the raw record of one update, and parsing it.
Pure; parsing never raises anything but NotTelegram (the endpoint's 422) or MalformedTelegram
(the worker's dead letter).

Telegram posts one ``Update`` per request. Messages are identified by their chat and their
number in it, ``"<chat id>:<message id>"`` (the outbound adapter names the messages it sends
the same way), since a message id alone is only unique within one chat."""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    InboundMessage,
    MalformedMessage,
    MediaRef,
    Reaction,
    json_long_text,
    json_text,
)

CHANNEL = "telegram"
# What setWebhook's secret_token may hold (Telegram sends it back in a header).
SECRET_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,256}$"  # noqa: S105 - a pattern, not a secret
_SECRET_TOKEN = re.compile(SECRET_TOKEN_PATTERN)
# How a webhook URL names a bot: its username, or any name of the same alphabet.
BOT = r"^[A-Za-z0-9_]{1,64}$"
# Which file of a message becomes which MediaRef kind. An animation is also sent as a
# document (for older clients); it is kept once, as the animation.
_FILES = (("photo", "image"), ("animation", "video"), ("document", "document"), ("video", "video"),
          ("video_note", "video"), ("voice", "audio"), ("audio", "audio"), ("sticker", "sticker"))

Object = dict[str, Any]


class NotTelegram(ValueError):
    """The body is not a Telegram Update (the endpoint answers 422)."""


class MalformedTelegram(MalformedMessage):
    """The record cannot become an interaction or a reaction: it is dead-lettered with this reason."""


def secret_valid(secret_token: bytes, header: str | None) -> bool:
    """Whether ``X-Telegram-Bot-Api-Secret-Token`` is the configured secret token, compared in
    constant time."""
    return bool(header) and hmac.compare_digest(secret_token, (header or "").encode())


def secret_token_allowed(token: str) -> bool:
    """Whether setWebhook takes ``token`` as a secret_token."""
    return _SECRET_TOKEN.fullmatch(token) is not None


# --- the endpoint: one update -> one raw record, or none ------------------------------------

@dataclass(frozen=True)
class TelegramItem:
    kind: Literal["message", "reaction"]
    person: str  # the user (else the chat) it is from, for the partition key
    payload: bytes  # {"bot": <the bot of the URL>, "update": <the Update as Telegram sent it>}


def split_update(bot: str, body: bytes) -> TelegramItem | None:
    """Check that the body is an Update and make its raw record; None for the kinds of update
    not kept (channel posts, callback queries, polls, member changes, anonymous reaction counts)."""
    try:
        update = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise NotTelegram("the body is not JSON") from exc
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        raise NotTelegram("not a Telegram Update (no update_id)")
    record = json.dumps({"bot": bot, "update": update}, separators=(",", ":")).encode()
    for key in ("message", "edited_message"):
        message = update.get(key)
        if isinstance(message, dict):
            return TelegramItem("message", _id_of(message.get("from")) or _id_of(message.get("chat")),
                                record)
    reaction = update.get("message_reaction")
    if isinstance(reaction, dict):
        person = _id_of(reaction.get("user")) or _id_of(reaction.get("actor_chat")) \
            or _id_of(reaction.get("chat"))
        return TelegramItem("reaction", person, record)
    return None


def _id_of(party: object) -> str:
    found = _int(party.get("id")) if isinstance(party, dict) else None
    return "" if found is None else str(found)


# --- the worker: one raw record -> a message or a reaction ----------------------------------

def parse_telegram(raw: bytes) -> InboundMessage | Reaction:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedTelegram("not JSON") from exc
    bot = data.get("bot") if isinstance(data, dict) else None
    update = data.get("update") if isinstance(data, dict) else None
    if not isinstance(bot, str) or not bot or not isinstance(update, dict):
        raise MalformedTelegram("not a Telegram update record")
    message, edited = update.get("message"), update.get("edited_message")
    if isinstance(message, dict):
        return _message(bot, message, edited=False)
    if isinstance(edited, dict):
        return _message(bot, edited, edited=True)
    reaction = update.get("message_reaction")
    if isinstance(reaction, dict):
        return _reaction(reaction)
    raise MalformedTelegram("neither a message nor a reaction")


def _message(bot: str, message: Object, *, edited: bool) -> InboundMessage:
    chat, sender = message.get("chat"), message.get("from")
    if not isinstance(chat, dict) or not isinstance(sender, dict):
        raise MalformedTelegram("a message without its chat or its sender")
    chat_id, number, user_id = _int(chat.get("id")), _int(message.get("message_id")), _int(sender.get("id"))
    if chat_id is None or number is None or user_id is None:
        raise MalformedTelegram("a message without its chat id, its message_id or its sender's id")
    caption = json_long_text(message.get("caption"))
    text = json_long_text(message.get("text")) or caption
    media = _files(message, caption)
    if not text and not media:
        raise MalformedTelegram("a message with neither text nor a file (a location, a poll, a "
                                "service message, ...)")
    message_id = f"{chat_id}:{number}"
    metadata = {"chat_id": str(chat_id), "chat_type": json_text(chat.get("type"))[:32]}
    if json_text(sender.get("username")):
        metadata["username"] = json_text(sender.get("username"))[:64]
    sent_at = _seconds(message.get("date"))
    if edited:
        # The edit is kept beside the message it changes, as its own interaction. Its id still
        # ends with "<chat id>:<message id>", so that a reply to it quotes that message.
        edit_date = _int(message.get("edit_date")) or 0
        metadata["edit_of"] = message_id
        message_id = f"edit:{edit_date}:{message_id}"
        sent_at = _seconds(edit_date) or sent_at
    reply = message.get("reply_to_message")
    replied = _int(reply.get("message_id")) if isinstance(reply, dict) else None
    name = " ".join(json_text(sender.get(key)) for key in ("first_name", "last_name")).strip()
    return InboundMessage(
        channel=CHANNEL,
        message_id=message_id[:MAX_ID_CHARS],
        sender_kind=CHANNEL,  # the Telegram user id
        sender=str(user_id),
        sender_name=name[:MAX_NAME_CHARS],
        text=text,
        sent_at=sent_at,
        in_reply_to=f"{chat_id}:{replied}" if replied is not None else "",
        # A reply goes to the chat (a private chat's id is the user's; a group's is not).
        conversation_id=f"{bot}:{chat_id}",
        media=media,
        metadata=metadata,
    )


def _files(message: Object, caption: str) -> tuple[MediaRef, ...]:
    found: list[MediaRef] = []
    for key, kind in _FILES:
        file = message.get(key)
        if key == "photo":  # the sizes of one photo, smallest first: the largest is kept
            file = file[-1] if isinstance(file, list) and file else None
        if key == "document" and "animation" in message:
            continue
        if not isinstance(file, dict) or not json_text(file.get("file_id")):
            continue
        found.append(MediaRef(kind=kind, provider_id=json_text(file.get("file_id"))[:MAX_ID_CHARS],
                              mime_type=json_text(file.get("mime_type"))[:255], caption=caption,
                              filename=json_text(file.get("file_name"))[:255]))
    return tuple(found)


def _reaction(reaction: Object) -> Reaction:
    chat = reaction.get("chat")
    chat_id = _int(chat.get("id")) if isinstance(chat, dict) else None
    number = _int(reaction.get("message_id"))
    if chat_id is None or number is None:
        raise MalformedTelegram("a reaction without its chat or its message_id")
    old, new = _emojis(reaction.get("old_reaction")), _emojis(reaction.get("new_reaction"))
    # A person may leave several reactions; the one just added is the news. None left: taken back.
    added = [emoji for emoji in new if emoji not in old]
    emoji = added[-1] if added else (new[-1] if new else "")
    return Reaction(CHANNEL, f"{chat_id}:{number}", emoji, _seconds(reaction.get("date")))


def _emojis(value: object) -> list[str]:
    """A list of ReactionType: an emoji as itself, a custom emoji as "custom_emoji:<id>", a
    paid reaction as a star."""
    found: list[str] = []
    for reaction in value if isinstance(value, list) else ():
        kind = reaction.get("type") if isinstance(reaction, dict) else None
        if kind == "emoji" and json_text(reaction.get("emoji")):
            found.append(json_text(reaction.get("emoji"))[:32])
        elif kind == "custom_emoji" and json_text(reaction.get("custom_emoji_id")):
            found.append("custom_emoji:" + json_text(reaction.get("custom_emoji_id"))[:64])
        elif kind == "paid":
            found.append("\u2b50")
    return found


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: object) -> datetime | None:
    """Telegram's dates are Unix seconds."""
    seconds = _int(value)
    if not seconds:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return None


