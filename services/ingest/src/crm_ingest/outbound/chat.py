"""Agents' replies to web chat visitors: into the visitor's transcript, and to their open
sockets (the outbound worker calls this for channel "chat")."""

from __future__ import annotations

from pymongo.errors import PyMongoError

from crm_ingest.chat.service import ChatService, NoSuchSession
from crm_ingest.domain.chat import CHANNEL, SENDER_KIND, provider_message_id
from crm_ingest.domain.message import MAX_TEXT_CHARS
from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest, Sent
from crm_ingest.store.chat import TranscriptContention

# What the widget shows comfortably; a longer reply is refused, not cut.
MAX_REPLY_CHARS = min(MAX_TEXT_CHARS, 20_000)


class ChatDelivery:
    """Delivered means stored in the transcript: the visitor sees it at once when connected
    (within a poll interval when connected to another replica), else on their next visit.
    The same request id delivered again stores nothing new and answers the same."""

    channel = CHANNEL

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    async def send(self, message: OutboundRequest) -> Sent:
        if message.recipient_kind != SENDER_KIND:
            raise DeliveryFailed(f"a chat reply goes to a {SENDER_KIND}, not a {message.recipient_kind}",
                                 permanent=True)
        text = message.text.strip()
        if not text:
            raise DeliveryFailed("a chat reply needs text", permanent=True)
        if len(text) > MAX_REPLY_CHARS:
            raise DeliveryFailed(f"a chat reply is at most {MAX_REPLY_CHARS} characters", permanent=True)
        try:
            stored = await self.chat.reply(message.workspace_id, message.recipient, message.conversation_id,
                                           text, outbound_id=message.id)
        except NoSuchSession as exc:
            raise DeliveryFailed("no such chat session for this visitor", permanent=True) from exc
        except (PyMongoError, TranscriptContention) as exc:
            raise ConnectionError(f"the chat transcript is not reachable: {type(exc).__name__}") from exc
        return Sent(provider_message_id=provider_message_id(stored.session_id, stored.seq), at=stored.at,
                    sender="agent", metadata={"chat_session": stored.session_id, "chat_seq": str(stored.seq)})
