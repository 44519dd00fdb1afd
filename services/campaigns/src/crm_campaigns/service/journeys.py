"""Journeys' use cases: define them, start runs on triggers, and advance due runs.

Runs live in Mongo (``store/journeys.py``): a runner leases one due run at a time with
``find_one_and_update``, computes its next position (``domain.journeys.advance``) and stores it
together with the effects' send docs and outbox events in ONE transaction, conditional on its
lease — so a restart mid-way repeats nothing, and two runners never move the same run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from crm.campaigns.v1 import events_pb2
from crm.contacts.v1 import contacts_pb2
from crm_campaigns import wire
from crm_campaigns.domain import events
from crm_campaigns.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_campaigns.domain.journeys import (
    Effect,
    Facts,
    Journey,
    Trigger,
    advance,
    trigger_matches,
    validate_journey,
)
from crm_campaigns.domain.templates import RenderError, context, render
from crm_campaigns.domain.tracking import tracked_content, unsubscribe_headers, unsubscribe_url
from crm_campaigns.store import journeys as store
from crm_campaigns.store.sends import insert_sends, send_doc, suppressed
from crm_campaigns.store.templates import get_template
from crmkit.ids import uuid7
from crmkit.kafka import Delivered, make_event
from crmkit.mongo import MongoDatabase, MongoUnitOfWork
from crmkit.topics import CAMPAIGNS

log = logging.getLogger(__name__)

TRIGGERS_CONSUMER = "campaigns.journeys"
# What a signal means to runs already going: events a wait_until may await, exit conditions.
_RUN_EVENTS = {"deal_won": "deal_won", "purchase": "purchase", "ticket_solved": "ticket_solved"}


@dataclass(frozen=True)
class Signal:
    """Something that happened to a contact that journeys care about (from a consumer)."""

    # segment_joined | deal_stage_changed | deal_won | deal_lost | ticket_solved | purchase | unsubscribed
    kind: str
    contact_id: str
    segment_id: str | None = None
    stage: str | None = None


class Contacts(Protocol):
    async def get_contact(self, workspace_id: str, contact_id: str) -> contacts_pb2.Contact | None: ...


@dataclass(frozen=True)
class JourneysConfig:
    base_url: str
    secret: str
    poll_seconds: float = 1.0
    lease_seconds: float = 60.0


UpdateContact = Callable[[str, str, Sequence[str], Sequence[str], Mapping[str, Any]], Awaitable[None]]


def _journey_of(doc: Mapping[str, Any]) -> Journey:
    d = doc["definition"]
    trig = d["trigger"]
    return Journey(Trigger(trig["kind"], trig.get("segment_id"), trig.get("stage")), d["steps"], d["start"],
                   tuple(d.get("exit_on", [])))


def public_journey(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], **doc["definition"], "active": doc["active"],
            "version": doc["version"], "created_at": doc["created_at"], "updated_at": doc["updated_at"]}


def public_run(doc: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("journey_id", "contact_id", "state", "step", "next_at", "waiting_for", "exit_reason", "seq",
            "started_at", "updated_at")
    return {"id": doc["_id"], **{k: doc.get(k) for k in keys}}


class JourneysService:
    def __init__(self, database: MongoDatabase, config: JourneysConfig, contacts: Contacts | None = None,
                 update_contact: UpdateContact | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.database = database
        self.config = config
        self.contacts = contacts
        self.update_contact = update_contact
        self.clock = clock

    # --- definitions -------------------------------------------------------------------

    @staticmethod
    def _validated(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        journey, errors = validate_journey(body)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            errors = [*errors, FieldError("name", "must be a name of at most 200 characters")]
        if errors or journey is None or not isinstance(name, str):
            raise InvalidFields(errors)
        definition = {"trigger": {k: v for k, v in vars(journey.trigger).items() if v is not None},
                      "start": journey.start, "steps": {k: dict(v) for k, v in journey.steps.items()},
                      "exit_on": list(journey.exit_on)}
        return name.strip(), definition

    async def create(self, workspace_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name, definition = self._validated(body)
        now = self.clock()
        doc = {"_id": str(uuid7()), "workspace_id": workspace_id, "name": name, "definition": definition,
               "trigger_kind": definition["trigger"]["kind"], "active": False, "version": 1,
               "created_at": now, "updated_at": now}
        async with self.database.unit_of_work() as uow:
            await store.insert_journey(uow, doc)
        return doc

    async def get(self, workspace_id: str, journey_id: str) -> dict[str, Any]:
        doc = await store.get_journey(self.database, workspace_id, journey_id)
        if doc is None:
            raise NotFound("journey")
        return doc

    async def list_journeys(self, workspace_id: str, limit: int, after: str | None) -> list[dict[str, Any]]:
        return await store.list_journeys(self.database, workspace_id, limit, after)

    async def replace(self, workspace_id: str, journey_id: str, body: Mapping[str, Any],
                      expected_version: int | None) -> dict[str, Any]:
        current = await self.get(workspace_id, journey_id)
        name, definition = self._validated(body)
        return await self._save(current, expected_version, name=name, definition=definition,
                                trigger_kind=definition["trigger"]["kind"])

    async def set_active(self, workspace_id: str, journey_id: str, active: bool) -> dict[str, Any]:
        current = await self.get(workspace_id, journey_id)
        return await self._save(current, None, active=active)

    async def _save(self, current: dict[str, Any], expected_version: int | None,
                    **changes: Any) -> dict[str, Any]:
        version = current["version"]
        if expected_version is not None and expected_version != version:
            raise VersionMismatch(version)
        doc = {**current, **changes, "version": version + 1, "updated_at": self.clock()}
        async with self.database.unit_of_work() as uow:
            if not await store.replace_journey(uow, doc, version):
                raise VersionMismatch(version + 1)
            if changes.get("active") is False:
                # Deactivating stops the journey: no new runs, and the running ones end.
                await uow.db.journey_runs.update_many(
                    {"workspace_id": doc["workspace_id"], "journey_id": doc["_id"], "state": store.ACTIVE},
                    {"$set": {"state": "exited", "exit_reason": "deactivated", "next_at": None}},
                    session=uow.session)
        return doc

    async def delete(self, workspace_id: str, journey_id: str) -> None:
        async with self.database.unit_of_work() as uow:
            if not await store.delete_journey(uow, workspace_id, journey_id):
                raise NotFound("journey")

    async def runs(self, workspace_id: str, journey_id: str, limit: int,
                   after: str | None) -> list[dict[str, Any]]:
        await self.get(workspace_id, journey_id)
        return await store.list_runs(self.database, workspace_id, journey_id, limit, after)

    # --- triggers ----------------------------------------------------------------------

    async def on_signals(self, items: Sequence[Delivered[Signal | None]]) -> int:
        """Apply each signal once (claimed by event id): exits, awaited events, then new runs.
        Returns how many runs started.

        A signal nothing can act on (no active journey of its workspace has its trigger, and
        its contact has no active run) is passed over without a transaction: applying it would
        change nothing, so there is nothing to claim. A segment of a million members is a
        million membership events: at one transaction each (about 50 a second on a loaded
        two-core machine), hours of MongoDB's time taken from everything else."""
        started = 0
        for delivered in await self._actionable(items):
            signal = delivered.item
            async with self.database.unit_of_work() as uow:
                if not await uow.claim(TRIGGERS_CONSUMER, delivered.event_id) or signal is None:
                    continue
                started += await self._apply(uow, delivered.workspace_id, signal)
        return started

    async def _actionable(self, items: Sequence[Delivered[Signal | None]]) -> list[Delivered[Signal | None]]:
        """The signals some journey or run may act on, in their order (two reads per workspace)."""
        by_workspace: dict[str, list[Delivered[Signal | None]]] = {}
        for delivered in items:
            if delivered.item is not None:
                by_workspace.setdefault(delivered.workspace_id, []).append(delivered)
        keep: set[int] = set()
        for workspace_id, group in by_workspace.items():
            signals = [d.item for d in group if d.item is not None]
            kinds = await store.triggered_kinds(self.database, workspace_id, {s.kind for s in signals})
            running = await store.contacts_running(self.database, workspace_id,
                                                   {s.contact_id for s in signals})
            keep.update(id(d) for d, s in zip(group, signals, strict=True)
                        if s.kind in kinds or s.contact_id in running)
        return [d for d in items if id(d) in keep]

    async def _apply(self, uow: MongoUnitOfWork, workspace_id: str, signal: Signal) -> int:
        now = self.clock()
        for run in await store.active_runs_of(uow, workspace_id, signal.contact_id):
            journey_doc = await uow.db.journeys.find_one({"_id": run["journey_id"]}, session=uow.session)
            exit_on = journey_doc["definition"].get("exit_on", []) if journey_doc else []
            if signal.kind in exit_on:
                await store.exit_run(uow, run["_id"], signal.kind, now)
            elif run.get("waiting_for") and run["waiting_for"] == _RUN_EVENTS.get(signal.kind):
                await store.note_event(uow, run["_id"], run["waiting_for"], now)
        started = 0
        for doc in await store.active_journeys(uow, workspace_id, signal.kind):
            journey = _journey_of(doc)
            if not trigger_matches(journey.trigger, signal.kind, segment_id=signal.segment_id,
                                   stage=signal.stage):
                continue
            run = {"_id": str(uuid7()), "workspace_id": workspace_id, "journey_id": doc["_id"],
                   "contact_id": signal.contact_id, "state": store.ACTIVE, "step": journey.start,
                   "waiting_since": None, "waiting_for": None, "events": [], "next_at": now, "seq": 0,
                   "last_send_id": None, "exit_reason": None, "lease_until": None,
                   "started_at": now, "updated_at": now}
            # The unique partial index refuses a second active run of the contact.
            if await store.start_run(uow, run):
                started += 1
        return started

    # --- the runner --------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            try:
                while await self.advance_one():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("journey runner failed; retrying")
            await asyncio.sleep(self.config.poll_seconds)

    async def advance_one(self) -> bool:
        """Lease one due run and move it on; False when none is due."""
        now = self.clock()
        run = await store.claim_due(self.database, now, timedelta(seconds=self.config.lease_seconds))
        if run is None:
            return False
        lease = run["lease_until"]
        ws = run["workspace_id"]
        doc = await store.get_journey(self.database, ws, run["journey_id"])
        if doc is None or not doc["active"]:
            async with self.database.unit_of_work() as uow:
                await store.save_run(uow, run["_id"], lease, {
                    "state": "exited", "exit_reason": "deactivated", "next_at": None, "updated_at": now})
            return True
        journey = _journey_of(doc)
        contact = await self.contacts.get_contact(ws, run["contact_id"]) if self.contacts else None
        if self.contacts is not None and contact is None:
            async with self.database.unit_of_work() as uow:
                await store.save_run(uow, run["_id"], lease, {
                    "state": "exited", "exit_reason": "contact gone", "next_at": None, "updated_at": now})
            return True
        values = wire.contact_values(contact) if contact is not None else {"custom": {}, "tags": []}
        # A journey mails only who agreed to email marketing, as a campaign does.
        values["marketing_consent"] = contact is not None and wire.email_consent(contact.consents)
        async with self.database.unit_of_work() as uow:
            engagement = (await store.engagement_of_send(uow, run["last_send_id"])
                          if run.get("last_send_id") else frozenset())
            facts = Facts(fields={**values.get("custom", {}), **{k: v for k, v in values.items()
                                                                 if k not in ("custom", "tags")}},
                          tags=frozenset(values.get("tags", [])), engagement=engagement,
                          events=frozenset(run.get("events", [])) | engagement)
            step = advance(journey, run["step"], facts=facts, now=now,
                           waiting_since=run.get("waiting_since"))
            seq, last_send = run.get("seq", 0), run.get("last_send_id")
            for effect in step.effects:
                seq += 1
                sent = await self._effect(uow, run, doc, effect, seq, contact, values)
                last_send = sent or last_send
            update: dict[str, Any] = {
                "step": step.step, "next_at": step.next_at, "waiting_for": step.waiting_for,
                "waiting_since": step.waiting_since, "seq": seq, "last_send_id": last_send, "updated_at": now}
            if step.waiting_since != run.get("waiting_since"):
                update["events"] = []
            if step.step is None:
                update.update(state="exited" if step.exited else "done", next_at=None)
            if not await store.save_run(uow, run["_id"], lease, update):
                # Another runner took the run over after our lease ran out: undo everything.
                raise RuntimeError(f"lost the lease of journey run {run['_id']}")
        # Contact updates go over gRPC (not transactional): they are idempotent (tags, fields).
        if self.update_contact is not None:
            for effect in step.effects:
                if effect.kind == "update_contact":
                    p = effect.params
                    await self.update_contact(ws, run["contact_id"], p.get("add_tags", []),
                                              p.get("remove_tags", []), p.get("fields", {}))
        return True

    async def _effect(self, uow: MongoUnitOfWork, run: Mapping[str, Any], journey: Mapping[str, Any],
                      effect: Effect, seq: int, contact: contacts_pb2.Contact | None,
                      values: Mapping[str, Any]) -> str | None:
        ws, contact_id = run["workspace_id"], run["contact_id"]
        if effect.kind == "notify_owner":
            payload = events_pb2.JourneyOwnerNotified(
                workspace_id=ws, journey_id=journey["_id"], run_id=run["_id"], contact_id=contact_id,
                owner_id=contact.owner_id if contact is not None else "", message=effect.params["message"])
            payload.at.FromDatetime(self.clock())
            uow.add(make_event(topic=CAMPAIGNS, type=events.JOURNEY_OWNER_NOTIFIED, source=events.SOURCE,
                               workspace=ws, subject=contact_id, payload=payload))
            return None
        if effect.kind != "send_email":
            return None
        return await self._send(uow, run, journey, effect, seq, values)

    async def _send(self, uow: MongoUnitOfWork, run: Mapping[str, Any], journey: Mapping[str, Any],
                    effect: Effect, seq: int, values: Mapping[str, Any]) -> str | None:
        """One send doc per run step (its campaign id names the journey, run and step), inserted
        with its outbound message in the run's transaction: the unique sends index refuses a
        second one, so a replay never mails twice."""
        ws, contact_id = run["workspace_id"], run["contact_id"]
        now = self.clock()
        send_id = str(uuid7())
        campaign_id = f"journey:{journey['_id']}:{run['_id']}:{seq}:{effect.step}"
        address = str(values.get("email") or "")
        template = await get_template(self.database, ws, effect.params["template_id"])
        reason = ""
        if not address:
            reason = "no email address"
        elif not values.get("marketing_consent"):
            reason = "no_consent"
        elif template is None:
            reason = "template not found"
        else:
            reason = (await suppressed(uow, ws, [address])).get(address, "")
        if reason:
            await insert_sends(uow, [send_doc(send_id=send_id, workspace_id=ws, campaign_id=campaign_id,
                                              contact_id=contact_id, address=address, status="suppressed",
                                              now=now, reason=reason)])
            return None
        assert template is not None
        key = {"base_url": self.config.base_url, "secret": self.config.secret, "workspace_id": ws,
               "send_id": send_id}
        variables = context(values, wire.company_values(contacts_pb2.Contact()), template.fields,
                            unsubscribe_url(**key))
        try:
            rendered = render({"subject": template.subject, "html": template.html, "text": template.text},
                              variables)
        except RenderError as exc:
            await insert_sends(uow, [send_doc(send_id=send_id, workspace_id=ws, campaign_id=campaign_id,
                                              contact_id=contact_id, address=address, status="failed",
                                              now=now, reason=str(exc)[:500])])
            return None
        html, text = tracked_content(rendered.html, rendered.text, **key)
        doc = send_doc(send_id=send_id, workspace_id=ws, campaign_id=campaign_id, contact_id=contact_id,
                       address=address, status="queued", now=now)
        doc.update(journey_id=journey["_id"], run_id=run["_id"], step=effect.step)
        await insert_sends(uow, [doc])
        uow.add(wire.outbound_message(workspace_id=ws, send_id=send_id, contact_id=contact_id,
                                      address=address, subject=rendered.subject, html=html, text=text,
                                      headers=unsubscribe_headers(**key)))
        return send_id

