"""The projection from the internal topics to the public ones.

For each fetched batch of an internal topic, one transaction: the events not seen before
(claimed by id) of workspaces that opted in go through the data policy, are stored in the
replay store under the workspace's feed lock, put in the outbox for their public topic
(JSON CloudEvents) and handed to ``Deliveries.enqueue``. Types without a policy are skipped;
a payload the policy cannot read is dead-lettered.

``contact.erased`` is handled for every workspace, opted in or not: the person's stored events
go (their pending deliveries with them), the erasure is announced on every public topic the
workspace publishes and stored in the feed (so webhooks and the pull API carry it), and the
confirmation to contacts is queued in the same transaction. The outbox cannot carry a null
value, so no Kafka tombstone is written: the erasure event is the signal to forget. A
``contact.merged`` moves the loser's stored events to the survivor (so a later erasure finds
them) besides being published.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from crm.contacts.v1 import events_pb2 as contacts_events
from crm_partners.domain.model import PublicEvent
from crm_partners.domain.policy import (
    CONTACT_ERASED,
    CONTACT_MERGED,
    DOMAINS,
    ERASURE_SOURCE,
    POLICIES,
    PUBLIC_TOPIC,
    PolicyError,
    domain_of,
    erasure_data,
    policies_of,
    project,
)
from crm_partners.service.deliveries import Deliveries
from crm_partners.service.feed import Feed
from crm_partners.settings import Settings
from crm_partners.store.events import EventsStore
from crm_partners.store.settings import SettingsStore, WorkspaceSettings
from crmkit.erasure import ErasureConfirmations
from crmkit.kafka import Envelope, Event, PermanentError, partition_key
from crmkit.kafka.handlers import Handlers
from crmkit.personal_data import MAX_ITEMS, Sections
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.topics import PUBLIC_CONTACTS

log = logging.getLogger(__name__)

CONSUMER = "partners.projection"
JSON = "application/json"
RETENTION_BATCH = 5000
RETENTION_INTERVAL_SECONDS = 3600.0


class InvalidSettings(ValueError):
    """Settings that name an unknown domain."""


class StaleSettings(Exception):
    """The settings changed since the caller read them."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the settings are at version {current}")
        self.current = current


def public_record(event: PublicEvent, trace: dict[str, str] | None = None) -> Event:
    """A public event as a Kafka record: CloudEvents binary headers, the JSON payload as value."""
    value = json.dumps(event.data, ensure_ascii=False, separators=(",", ":")).encode()
    envelope = Envelope(id=event.id, type=event.type, source=event.source, workspace=event.workspace_id,
                        subject=event.subject, time=event.time, data=value, trace=dict(trace or {}),
                        content_type=JSON)
    return Event(topic=event.topic, key=event.key, envelope=envelope)


@dataclass
class _Batch:
    """What one transaction produced, for after its commit."""

    stored: list[PublicEvent]
    erased: int = 0


class Projection:
    def __init__(self, db: PgDatabase, deliveries: Deliveries, confirmations: ErasureConfirmations,
                 settings: Settings) -> None:
        self.db = db
        self.deliveries = deliveries
        self.confirmations = confirmations
        self.settings = settings
        self.feed = Feed(db)

    def handlers(self) -> dict[str, Handlers]:
        """One pair of handlers per internal topic with public events."""
        return {topic: self._handlers(topic) for topic in PUBLIC_TOPIC}

    def _handlers(self, topic: str) -> Handlers:
        types = frozenset(policies_of(topic))

        async def one(envelope: Envelope) -> None:
            await self.apply([envelope])

        async def batch(envelopes: Sequence[Envelope]) -> None:
            await self.apply(envelopes)

        return Handlers(one, batch, types)

    async def apply(self, envelopes: Sequence[Envelope]) -> list[PublicEvent]:
        """Project a batch of internal events in one transaction; returns what was stored."""
        wanted = list({e.id: e for e in envelopes if e.type in POLICIES}.values())
        if not wanted:
            return []
        async with self.db.unit_of_work() as uow:
            claimed = await uow.claim_many(CONSUMER, [e.id for e in wanted])
            fresh = [e for e in wanted if e.id in claimed]
            opted = await SettingsStore(uow.conn).of([e.workspace for e in fresh])
            batch = await self._project(uow, fresh, opted)
            if batch.stored:
                traces = {e.id: e.trace for e in fresh}
                for event in batch.stored:
                    for topic in self._topics_of(event, opted[event.workspace_id]):
                        uow.add(public_record(replace(event, topic=topic), traces.get(event.id)))
                await self.deliveries.enqueue(uow, batch.stored)
        if batch.stored:
            self.deliveries.wake()
            self.feed.notify()
        if batch.erased:
            self.confirmations.queued()
        return batch.stored

    async def _project(self, uow: PgUnitOfWork, envelopes: Sequence[Envelope],
                       opted: dict[str, WorkspaceSettings]) -> _Batch:
        events = EventsStore(uow.conn)
        public: list[PublicEvent] = []
        erased = 0
        for envelope in envelopes:
            policy = POLICIES[envelope.type]
            settings = opted.get(envelope.workspace)
            if envelope.type == CONTACT_ERASED:
                contact_id = _erased_contact(envelope)
                await events.erase_contact(envelope.workspace, contact_id)
                await self.confirmations.queue(uow.conn, envelope.workspace, UUID(contact_id))
                erased += 1
                if settings is not None and settings.enabled:
                    public.append(_erasure_event(envelope, contact_id))
                continue
            if envelope.type == CONTACT_MERGED:
                merged = _merge(envelope)
                await events.merge_contact(envelope.workspace, merged.loser_id, merged.survivor_id)
            if settings is None or not settings.publishes(policy.domain):
                continue
            try:
                projected = project(policy, envelope.data, envelope.workspace, settings.hash_key)
            except PolicyError as exc:
                raise PermanentError(str(exc)) from exc
            public.append(PublicEvent(
                id=envelope.id, workspace_id=envelope.workspace, topic=policy.topic, type=envelope.type,
                source=envelope.source, subject=envelope.subject,
                key=partition_key(envelope.workspace, envelope.subject), time=envelope.time,
                data=projected.data, contact_ids=projected.contact_ids))
        return _Batch(await events.insert(public), erased)

    @staticmethod
    def _topics_of(event: PublicEvent, settings: WorkspaceSettings) -> list[str]:
        """Where a stored event is published: its topic; an erasure on every topic the
        workspace publishes, so each topic's readers are told."""
        if event.type != CONTACT_ERASED:
            return [event.topic]
        return [topic for topic in PUBLIC_TOPIC.values() if settings.publishes(domain_of(topic))]

    # -- Retention and the data export ----------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete the replay store's events older than the retention, in batches."""
        age = timedelta(days=self.settings.replay_retention_days)
        purged = 0
        while True:
            async with self.db.unit_of_work() as uow:
                removed = await EventsStore(uow.conn).purge_older_than(age, RETENTION_BATCH)
            purged += removed
            if removed < RETENTION_BATCH:
                return purged

    async def run_retention(self) -> None:
        """Drop replay-store events older than the retention, until cancelled."""
        while True:
            try:
                purged = await self.purge_expired()
                if purged:
                    log.info("expired public events deleted", extra={"events": purged})
            except Exception:
                log.exception("the replay store retention failed; trying again later")
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]) -> Sections:
        """The replay store's events about these people, for their data export."""
        events = await EventsStore(self.db.pool).about(workspace_id, [str(i) for i in contact_ids],
                                                       MAX_ITEMS + 1)
        return {"public_events": events}

    # -- The workspace's opt-in ----------------------------------------------------------------

    async def workspace_settings(self, workspace_id: str) -> WorkspaceSettings | None:
        return await SettingsStore(self.db.pool).get(workspace_id)

    async def update_settings(self, workspace_id: str, enabled: bool, domains: Sequence[str],
                              expected_version: int) -> WorkspaceSettings:
        """Opt in or out (``domains`` empty: all); ``expected_version`` 0 for the first settings."""
        unknown = sorted(set(domains) - set(DOMAINS))
        if unknown:
            raise InvalidSettings(f"unknown domains: {', '.join(unknown)}; known: {', '.join(DOMAINS)}")
        async with self.db.unit_of_work() as uow:
            store = SettingsStore(uow.conn)
            written = await store.put(workspace_id, enabled, sorted(set(domains)), expected_version)
            if written is None:
                current = await store.get(workspace_id)
                raise StaleSettings(current.version if current else 0)
        log.info("public events settings changed", extra={"enabled": enabled, "domains": list(domains)})
        return written


def _erased_contact(envelope: Envelope) -> str:
    erased = envelope.parse(contacts_events.ContactErased)
    assert isinstance(erased, contacts_events.ContactErased)
    if erased.workspace_id and erased.workspace_id != envelope.workspace:
        raise PermanentError("the payload's workspace differs from the envelope's")
    try:
        return str(UUID(erased.contact_id))
    except ValueError as exc:
        raise PermanentError("an erasure without a valid contact id") from exc


@dataclass(frozen=True)
class _Merge:
    loser_id: str
    survivor_id: str


def _merge(envelope: Envelope) -> _Merge:
    merged = envelope.parse(contacts_events.ContactMerged)
    assert isinstance(merged, contacts_events.ContactMerged)
    if not merged.loser_id or not merged.survivor_id or merged.loser_id == merged.survivor_id:
        raise PermanentError("a merge without two contact ids")
    return _Merge(merged.loser_id, merged.survivor_id)


def _erasure_event(envelope: Envelope, contact_id: str) -> PublicEvent:
    """The erasure as partners get it: keyed like the person's events; stored once (on the
    contacts topic), published on every topic of the workspace."""
    erased_at = envelope.time.astimezone(UTC) if envelope.time.tzinfo else envelope.time.replace(tzinfo=UTC)
    return PublicEvent(id=envelope.id, workspace_id=envelope.workspace, topic=PUBLIC_CONTACTS,
                       type=CONTACT_ERASED, source=ERASURE_SOURCE, subject=contact_id,
                       key=partition_key(envelope.workspace, contact_id), time=datetime.now(UTC),
                       data=erasure_data(contact_id, erased_at.isoformat()))
