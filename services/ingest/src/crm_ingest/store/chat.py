"""The web chat's MongoDB queries: sessions and their transcripts. Every query is scoped by
workspace.

``chat_sessions``: one document per visitor session (the visitor, the name and email they
gave, the email their website verified, read positions and typing times, ``last_seq``).
``chat_messages``: one document per message, ``_id`` ``<session>:<seq>``, with a ``key``
unique per session (``c:<client id>`` for a visitor's message, ``o:<outbound id>`` for an
agent's reply) that makes a retried send store nothing new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from crm_ingest.domain.chat import ChatMessage, ChatSession, Direction, SessionState
from crmkit.mongo import MongoDatabase, MongoUnitOfWork

# Appending retries on a seq another writer took first; a session has few writers at once.
_MAX_ATTEMPTS = 50


class TranscriptContention(Exception):
    """A message could not get a seq: too many writers on one session at once."""


async def prepare_chat(database: MongoDatabase) -> None:
    """Indexes for every chat query."""
    db = database.db
    await db.chat_sessions.create_index([("workspace_id", ASCENDING), ("visitor_id", ASCENDING),
                                         ("created_at", DESCENDING)])
    await db.chat_messages.create_index([("workspace_id", ASCENDING), ("session_id", ASCENDING),
                                         ("seq", ASCENDING)], unique=True)
    await db.chat_messages.create_index([("workspace_id", ASCENDING), ("session_id", ASCENDING),
                                         ("key", ASCENDING)], unique=True)
    await db.chat_messages.create_index([("accepted", ASCENDING), ("at", ASCENDING)])
    await db.chat_messages.create_index([("workspace_id", ASCENDING), ("visitor_id", ASCENDING)])


def _session(doc: dict[str, Any]) -> ChatSession:
    return ChatSession(id=doc["_id"], workspace_id=doc["workspace_id"], widget=doc["widget"],
                       visitor_id=doc["visitor_id"], name=doc.get("name", ""),
                       email=doc.get("email", ""), created_at=doc["created_at"],
                       verified_email=doc.get("verified_email", ""))


def _message(doc: dict[str, Any]) -> ChatMessage:
    return ChatMessage(session_id=doc["session_id"], seq=doc["seq"], direction=doc["direction"],
                       text=doc["text"], at=doc["at"], client_id=doc.get("client_id", ""),
                       outbound_id=doc.get("outbound_id", ""))


async def erase_chat(uow: MongoUnitOfWork, workspace_id: str, contact_ids: list[str],
                     visitors: list[str]) -> None:
    """An erased person's chat sessions and transcripts (by the visitor ids they chatted as),
    in the transaction that erases their interactions."""
    if visitors:
        scope = {"workspace_id": workspace_id, "visitor_id": {"$in": visitors}}
        await uow.db.chat_messages.delete_many(scope, session=uow.session)
        await uow.db.chat_sessions.delete_many(scope, session=uow.session)


class ChatStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.db = database.db

    # --- sessions ---

    async def create_session(self, session: ChatSession) -> None:
        await self.db.chat_sessions.insert_one({
            "_id": session.id, "workspace_id": session.workspace_id, "widget": session.widget,
            "visitor_id": session.visitor_id, "name": session.name, "email": session.email,
            "verified_email": session.verified_email, "created_at": session.created_at,
            "last_seq": 0, "visitor_read_seq": 0, "agent_read_seq": 0,
        })

    async def session(self, workspace_id: str, session_id: str) -> ChatSession | None:
        doc = await self.db.chat_sessions.find_one({"_id": session_id, "workspace_id": workspace_id})
        return _session(doc) if doc else None

    async def latest_session_of(self, workspace_id: str, visitor_id: str) -> ChatSession | None:
        doc = await self.db.chat_sessions.find_one(
            {"workspace_id": workspace_id, "visitor_id": visitor_id}, sort=[("created_at", DESCENDING)])
        return _session(doc) if doc else None

    async def update_visitor(self, workspace_id: str, session_id: str, name: str, email: str) -> None:
        """What the visitor says about themselves; empty values keep what they said before."""
        changes = {k: v for k, v in (("name", name), ("email", email)) if v}
        if changes:
            await self.db.chat_sessions.update_one({"_id": session_id, "workspace_id": workspace_id},
                                                   {"$set": changes})

    async def state(self, workspace_id: str, session_id: str) -> SessionState | None:
        doc = await self.db.chat_sessions.find_one(
            {"_id": session_id, "workspace_id": workspace_id},
            {"last_seq": 1, "visitor_read_seq": 1, "agent_read_seq": 1, "visitor_typing_at": 1,
             "agent_typing_at": 1})
        if doc is None:
            return None
        return SessionState(last_seq=doc.get("last_seq", 0), visitor_read_seq=doc.get("visitor_read_seq", 0),
                            agent_read_seq=doc.get("agent_read_seq", 0),
                            visitor_typing_at=doc.get("visitor_typing_at"),
                            agent_typing_at=doc.get("agent_typing_at"))

    async def mark_read(self, workspace_id: str, session_id: str, by: str, seq: int) -> bool:
        """Move ``<by>_read_seq`` forward (never back). False for no such session."""
        result = await self.db.chat_sessions.update_one(
            {"_id": session_id, "workspace_id": workspace_id}, {"$max": {f"{by}_read_seq": seq}})
        return result.matched_count == 1

    async def mark_typing(self, workspace_id: str, session_id: str, by: str, at: datetime) -> bool:
        result = await self.db.chat_sessions.update_one(
            {"_id": session_id, "workspace_id": workspace_id}, {"$max": {f"{by}_typing_at": at}})
        return result.matched_count == 1

    # --- the transcript ---

    async def append(self, session: ChatSession, direction: Direction, text: str, at: datetime, *,
                     client_id: str = "", outbound_id: str = "") -> tuple[ChatMessage, bool]:
        """Store a message under the session's next seq, or find the one stored before with the
        same client id (or outbound id). True when it is new.

        The seq is the last stored one plus one, inserted under a unique (session, seq) index:
        a writer that loses the race reads again. So a seq is taken only once the one before it
        is stored, and a reader that has seen seq n has seen every seq below it: the readers'
        "everything after n" never misses a message that was still being written."""
        key = f"o:{outbound_id}" if outbound_id else f"c:{client_id}"
        scope = {"workspace_id": session.workspace_id, "session_id": session.id}
        for _ in range(_MAX_ATTEMPTS):
            last = await self.db.chat_messages.find_one(scope, {"seq": 1}, sort=[("seq", DESCENDING)])
            seq = (last["seq"] if last else 0) + 1
            message = ChatMessage(session.id, seq, direction, text, at, client_id, outbound_id)
            try:
                await self.db.chat_messages.insert_one({
                    "_id": f"{session.id}:{seq}", **scope, "visitor_id": session.visitor_id, "seq": seq,
                    "direction": direction, "text": text, "at": at, "key": key,
                    "client_id": client_id, "outbound_id": outbound_id,
                    # a visitor's message is accepted once the raw topic has it
                    "accepted": direction == "outbound"})
            except DuplicateKeyError:
                existing = await self.db.chat_messages.find_one({**scope, "key": key})
                if existing is not None:
                    await self._seen(session, existing["seq"])
                    return _message(existing), False
                continue  # another message took this seq
            await self._seen(session, seq)
            return message, True
        raise TranscriptContention(session.id)

    async def _seen(self, session: ChatSession, seq: int) -> None:
        """``last_seq`` on the session, which readers on every replica poll. Set again when a
        retried send finds its message, so a write cut short between the two still shows."""
        await self.db.chat_sessions.update_one({"_id": session.id, "workspace_id": session.workspace_id},
                                               {"$max": {"last_seq": seq}})

    async def is_accepted(self, session: ChatSession, seq: int) -> bool:
        doc = await self.db.chat_messages.find_one(
            {"workspace_id": session.workspace_id, "session_id": session.id, "seq": seq}, {"accepted": 1})
        return bool(doc and doc.get("accepted"))

    async def mark_accepted(self, session: ChatSession, seq: int) -> None:
        """The message is on the raw topic: a retried send need not append it again."""
        await self.db.chat_messages.update_one(
            {"workspace_id": session.workspace_id, "session_id": session.id, "seq": seq},
            {"$set": {"accepted": True}})

    async def messages_after(self, workspace_id: str, session_id: str, after: int,
                             limit: int) -> list[ChatMessage]:
        cursor = self.db.chat_messages.find(
            {"workspace_id": workspace_id, "session_id": session_id, "seq": {"$gt": after}},
        ).sort("seq", ASCENDING).limit(limit)
        return [_message(doc) async for doc in cursor]

    async def unaccepted(self, before: datetime, limit: int) -> list[tuple[ChatMessage, ChatSession]]:
        """Visitor messages stored before ``before`` that the raw topic never took, with their
        sessions, in every workspace (the one query that is not scoped: a maintenance sweep)."""
        docs = await self.db.chat_messages.find(
            {"accepted": False, "at": {"$lt": before}, "direction": "inbound"},
        ).sort("at", ASCENDING).limit(limit).to_list()
        if not docs:
            return []
        sessions = {doc["_id"]: _session(doc) async for doc in self.db.chat_sessions.find(
            {"_id": {"$in": list({doc["session_id"] for doc in docs})}})}
        return [(_message(doc), sessions[doc["session_id"]]) for doc in docs
                if doc["session_id"] in sessions
                and sessions[doc["session_id"]].workspace_id == doc["workspace_id"]]
