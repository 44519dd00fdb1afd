"""Campaigns' use cases: write a draft, schedule, send, pause, resume, cancel, progress.

The sending itself is ``service.sender``'s (a background task); these only move the status,
each change with its ``campaign.*`` event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from crm_campaigns import wire
from crm_campaigns.domain import campaigns as rules
from crm_campaigns.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_campaigns.domain.model import Audience, Campaign, QuietHours
from crm_campaigns.service.audiences import Audiences
from crm_campaigns.service.tracking import unsubscribe_send
from crm_campaigns.store import campaigns as store
from crm_campaigns.store import sends as sends_store
from crm_campaigns.store.templates import get_template
from crm_campaigns.wire import DeliveryReport
from crmkit.ids import uuid7
from crmkit.kafka import Delivered
from crmkit.mongo import MongoDatabase

MAX_PAGE = 100
DELIVERIES_CONSUMER = "campaigns.deliveries"
_DELIVERY_STATUSES = frozenset({"sent", "delivered", "bounced", "failed"})
_REPORTED = _DELIVERY_STATUSES | {"complained"}


@dataclass(frozen=True)
class CampaignDraft:
    name: str
    template_id: str
    segments: tuple[str, ...]
    exclude: tuple[str, ...]
    schedule_at: datetime | None
    throttle_per_minute: int | None
    quiet_hours: QuietHours | None


class Campaigns:
    def __init__(self, db: MongoDatabase, audiences: Audiences) -> None:
        self.db = db
        self.audiences = audiences

    async def _check(self, workspace_id: str, draft: CampaignDraft, now: datetime) -> None:
        errors = rules.validate_settings(name=draft.name, throttle_per_minute=draft.throttle_per_minute,
                                         quiet_hours=draft.quiet_hours, segments=draft.segments,
                                         exclude=draft.exclude)
        if draft.schedule_at is not None:
            try:
                rules.validate_schedule(draft.schedule_at, now, required=False)
            except InvalidFields as exc:
                errors.extend(exc.errors)
        if await get_template(self.db, workspace_id, draft.template_id) is None:
            errors.append(FieldError("template_id", "no such template in this workspace"))
        if not errors:
            await self._audience_size(workspace_id, draft.segments, draft.exclude)  # unknown segments
        if errors:
            raise InvalidFields(errors)

    async def _audience_size(self, workspace_id: str, segments: Sequence[str], exclude: Sequence[str]) -> int:
        """0 or 1: whether the audience has anyone (InvalidFields for unknown segments)."""
        members = self.audiences.members(workspace_id, segments, exclude, company_details=False)
        try:
            async for _ in members:
                return 1
        finally:
            await members.aclose()
        return 0

    async def create(self, workspace_id: str, draft: CampaignDraft) -> Campaign:
        now = datetime.now(UTC)
        await self._check(workspace_id, draft, now)
        campaign = Campaign(id=str(uuid7()), workspace_id=workspace_id, name=draft.name,
                            template_id=draft.template_id, audience=Audience(draft.segments, draft.exclude),
                            status="draft", schedule_at=draft.schedule_at,
                            throttle_per_minute=draft.throttle_per_minute, quiet_hours=draft.quiet_hours,
                            version=1, created_at=now, updated_at=now)
        async with self.db.unit_of_work() as uow:
            await store.insert_campaign(uow, campaign)
        return campaign

    async def get(self, workspace_id: str, campaign_id: str) -> Campaign:
        found = await store.get_campaign(self.db, workspace_id, campaign_id)
        if found is None:
            raise NotFound("campaign")
        return found

    async def progress(self, workspace_id: str, campaign_id: str) -> dict[str, int]:
        return await sends_store.progress(self.db, workspace_id, campaign_id)

    async def list(self, workspace_id: str, limit: int, after: str | None) -> list[Campaign]:
        return await store.list_campaigns(self.db, workspace_id, min(limit, MAX_PAGE), after)

    async def update(self, workspace_id: str, campaign_id: str, draft: CampaignDraft,
                     expected_version: int) -> Campaign:
        current = await self.get(workspace_id, campaign_id)
        if current.version != expected_version:
            raise VersionMismatch(current.version)
        rules.check(current, "edit")
        now = datetime.now(UTC)
        await self._check(workspace_id, draft, now)
        updated = replace(current, name=draft.name, template_id=draft.template_id,
                          audience=Audience(draft.segments, draft.exclude), schedule_at=draft.schedule_at,
                          throttle_per_minute=draft.throttle_per_minute, quiet_hours=draft.quiet_hours,
                          version=current.version + 1, updated_at=now)
        await self._write(current, updated, None)
        return updated

    async def delete(self, workspace_id: str, campaign_id: str) -> None:
        current = await self.get(workspace_id, campaign_id)
        rules.check(current, "delete")
        async with self.db.unit_of_work() as uow:
            await store.delete_campaign(uow, workspace_id, campaign_id)

    async def _write(self, before: Campaign, after: Campaign, event: str | None) -> None:
        async with self.db.unit_of_work() as uow:
            if not await store.replace_campaign(uow, after, before.version):
                raise VersionMismatch((await self.get(before.workspace_id, before.id)).version)
            if event:
                uow.add(wire.campaign_event(after, event, after.updated_at))

    async def act(self, workspace_id: str, campaign_id: str, action: str,
                  schedule_at: datetime | None = None, expected_version: int | None = None) -> Campaign:
        """``schedule`` (at ``schedule_at`` or the campaign's), ``send`` (now), ``pause``,
        ``resume`` or ``cancel``. Scheduling and sending need a template and a non-empty
        audience (422 otherwise)."""
        current = await self.get(workspace_id, campaign_id)
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(current.version)
        now = datetime.now(UTC)
        rules.check(current, action)
        if action == "schedule":
            current = replace(current, schedule_at=schedule_at or current.schedule_at)
            rules.validate_schedule(current.schedule_at, now, required=True)
        if action in ("schedule", "send"):
            if await get_template(self.db, workspace_id, current.template_id) is None:
                raise InvalidFields([FieldError("template_id", "the template was deleted")])
            audience = current.audience
            if not await self._audience_size(workspace_id, audience.segments, audience.exclude):
                raise InvalidFields([FieldError("audience", "the audience is empty")])
        after = rules.transition(current, action, now)
        event: dict[str, str] = {"schedule": "scheduled", "send": "started", "pause": "paused",
                                 "resume": "resumed", "cancel": "cancelled"}
        await self._write(current, after, event[action])
        return after

    async def record_deliveries(self, items: Sequence[Delivered[DeliveryReport]]) -> int:
        """Ingest's statuses of campaign messages, once per event, in one transaction: the send
        moves forward only (a late ``sent`` never undoes ``delivered``), a bounce suppresses
        the address, and each change is published as ``message.<status>``; a complaint (the
        recipient reported the message as spam) unsubscribes them as the link would, the
        address suppressed as ``complained``. Returns how many sends changed."""
        changed = 0
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(DELIVERIES_CONSUMER, [d.event_id for d in items])
            for delivered in items:
                report = delivered.item
                if delivered.event_id not in fresh or report.status not in _REPORTED:
                    continue
                send = await sends_store.get_send(uow, report.send_id)
                if send is None or send["workspace_id"] != delivered.workspace_id:
                    continue  # not ours, or another workspace's id
                if report.status == "complained":
                    changed += int(await unsubscribe_send(uow, send, "complaint", "complained", report.at))
                    continue
                if not sends_store.advances(send["status"], report.status):
                    continue
                await sends_store.set_status(uow, report.send_id, report.status, report.at, report.error)
                if report.status == "bounced" and send["address"]:
                    await sends_store.suppress(uow, send["workspace_id"], send["address"], "bounced",
                                               report.at)
                uow.add(wire.message_event(send, report.status, report.at, report.error))
                changed += 1
        return changed


def draft_of(body: dict[str, Any]) -> CampaignDraft:
    """A campaign's settings from a request body already shaped by the API schema."""
    audience = body.get("audience") or {}
    quiet = body.get("quiet_hours")
    return CampaignDraft(
        name=body["name"], template_id=body["template_id"],
        segments=tuple(dict.fromkeys(audience.get("segments") or [])),
        exclude=tuple(dict.fromkeys(audience.get("exclude") or [])),
        schedule_at=body.get("schedule_at"), throttle_per_minute=body.get("throttle_per_minute"),
        quiet_hours=QuietHours(quiet["start"], quiet["end"], quiet["time_zone"]) if quiet else None)
