"""The sender: a background task that sends running campaigns, batch by batch.

For each campaign that is ``sending`` (or ``scheduled`` and due, which it starts) the sender
holds a lease (one sender per campaign across replicas) and streams the audience from
contacts in contact id order. Per batch, in ONE transaction: the sends already made are
skipped, recipients without an address, without email marketing consent or on the
suppression list get a ``suppressed`` send (with the reason), the others a ``queued`` send and
their OutboundMessage in the outbox, and the checkpoint (the last contact id handled) moves.
The unique (workspace, campaign, contact) index on sends makes a second send to anyone
impossible, whatever crashes; the checkpoint only saves streaming again from the start.

Throttling keeps the campaign at ``throttle_per_minute`` (a batch is never more than a
minute's worth). A recipient in quiet hours (their contact's ``time_zone`` custom field, else
the campaign's) gets no send in this pass: when the pass ends, the next one starts when the
earliest quiet hours end, and takes only those still without a send. A campaign is ``sent``
when a pass ends with nobody held back. Pause and cancel take effect between batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from crm_campaigns import wire
from crm_campaigns.domain import campaigns as rules
from crm_campaigns.domain import templates as rendering
from crm_campaigns.domain.model import Campaign, Template
from crm_campaigns.domain.tracking import tracked_content, unsubscribe_headers, unsubscribe_url
from crm_campaigns.service.ab import AbPlan, AbTests
from crm_campaigns.service.audiences import Audiences
from crm_campaigns.service.templates import parts_of
from crm_campaigns.store import campaigns as store
from crm_campaigns.store import sends as sends_store
from crm_campaigns.store.templates import get_template
from crm_campaigns.wire import Recipient
from crmkit.ids import uuid7
from crmkit.mongo import MongoDatabase

log = logging.getLogger(__name__)


class Sender:
    LEASE_SECONDS = 60.0

    def __init__(self, db: MongoDatabase, audiences: Audiences, *, base_url: str, secret: str,
                 batch_size: int = 100, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.audiences = audiences
        self.base_url = base_url
        self.secret = secret
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        self.running: dict[str, asyncio.Task[None]] = {}
        self.ab = AbTests(db, audiences)  # A/B campaigns: test shares first, then the winner

    async def run(self) -> None:
        """Look for due campaigns every ``poll_seconds`` until cancelled."""
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("the sender's round failed; trying again")
                await asyncio.sleep(self.poll_seconds)
        finally:
            tasks = list(self.running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def tick(self) -> None:
        now = datetime.now(UTC)
        self.running = {k: t for k, t in self.running.items() if not t.done()}
        for campaign in await store.due_campaigns(self.db, now):
            if campaign.id in self.running:
                continue
            if campaign.status == "scheduled" and not await self._start(campaign, now):
                continue
            if not await store.take_lease(self.db, campaign.id, self.owner, now, self.LEASE_SECONDS):
                continue
            self.running[campaign.id] = asyncio.create_task(self._work(campaign.workspace_id, campaign.id))

    async def _start(self, campaign: Campaign, now: datetime) -> bool:
        """A scheduled campaign whose time came: ``sending`` now, with campaign.started."""
        started = replace(campaign, status="sending", started_at=now, updated_at=now,
                          version=campaign.version + 1)
        async with self.db.unit_of_work() as uow:
            if not await store.replace_campaign(uow, started, campaign.version):
                return False
            uow.add(wire.campaign_event(started, "started", now))
        return True

    async def _work(self, workspace_id: str, campaign_id: str) -> None:
        try:
            await self.send_campaign(workspace_id, campaign_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sending campaign %s stopped; it resumes from its checkpoint", campaign_id)
        finally:
            await asyncio.shield(store.release_lease(self.db, campaign_id, self.owner))

    async def send_campaign(self, workspace_id: str, campaign_id: str) -> None:
        """One pass over the audience from the checkpoint on (see the module's docstring)."""
        campaign = await store.get_campaign(self.db, workspace_id, campaign_id)
        if campaign is None or campaign.status != "sending":
            return
        checkpoint = await store.get_checkpoint(self.db, campaign_id)
        now = datetime.now(UTC)
        not_before = checkpoint.get("not_before")
        if not_before is not None and not_before > now:
            return
        template = await get_template(self.db, workspace_id, campaign.template_id)
        if template is None:
            log.warning("campaign %s lost its template; cancelling it", campaign_id)
            await self._finish(campaign, "cancelled")
            return
        plan = await self.ab.plan(campaign, template, now)
        state: dict[str, Any] = {"pass": checkpoint.get("pass", 0), "after": checkpoint.get("after", ""),
                                 "deferred_until": checkpoint.get("deferred_until"),
                                 "next_at": checkpoint.get("next_at")}
        size = rules.batch_size(campaign.throttle_per_minute, self.batch_size)
        queued = 0
        await self._wait_until(campaign, state["next_at"])  # the throttle holds across restarts
        batch: list[Recipient] = []
        members = self.audiences.members(workspace_id, campaign.audience.segments, campaign.audience.exclude)
        try:
            async for recipient in members:
                if state["after"] and recipient.contact_id <= state["after"]:
                    continue
                batch.append(recipient)
                if len(batch) < size:
                    continue
                queued += await self._batch(campaign, template, batch, state, plan)
                batch = []
                await self._wait_until(campaign, state["next_at"])
                if not await self._still_sending(campaign):
                    return
            if batch:
                queued += await self._batch(campaign, template, batch, state, plan)
        finally:
            await members.aclose()
        if plan is not None and state["deferred_until"] is None:
            async with self.db.unit_of_work() as uow:
                if await self.ab.end_pass(uow, campaign, plan, state):
                    return  # the test shares went out; the winner's pass comes after decide_after
        if state["deferred_until"] is not None:
            async with self.db.unit_of_work() as uow:
                await store.set_checkpoint(uow, campaign_id, {"pass": state["pass"] + 1, "after": "",
                                                              "deferred_until": None,
                                                              "not_before": state["deferred_until"]})
            return
        current = await store.get_campaign(self.db, workspace_id, campaign_id)
        if current is not None and current.status == "sending":
            await self._finish(current, "sent")

    async def _wait_until(self, campaign: Campaign, until: datetime | None) -> None:
        """Sleep until the throttle lets the next batch go, keeping the lease."""
        while until is not None:
            left = (until - datetime.now(UTC)).total_seconds()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.LEASE_SECONDS / 3))
            await store.take_lease(self.db, campaign.id, self.owner, datetime.now(UTC), self.LEASE_SECONDS)

    async def _still_sending(self, campaign: Campaign) -> bool:
        current = await store.get_campaign(self.db, campaign.workspace_id, campaign.id)
        await store.take_lease(self.db, campaign.id, self.owner, datetime.now(UTC), self.LEASE_SECONDS)
        return current is not None and current.status == "sending"

    async def _finish(self, campaign: Campaign, status: str) -> None:
        now = datetime.now(UTC)
        done = replace(campaign, status=status, finished_at=now, updated_at=now, version=campaign.version + 1)
        counts = await sends_store.progress(self.db, campaign.workspace_id, campaign.id)
        async with self.db.unit_of_work() as uow:
            if not await store.replace_campaign(uow, done, campaign.version):
                return  # paused or cancelled meanwhile: the next round sees it
            if status == "sent":
                uow.add(wire.campaign_completed(done, now, queued=sum(counts.values()) - counts["suppressed"],
                                                suppressed=counts["suppressed"]))
            else:
                uow.add(wire.campaign_event(done, "cancelled", now))

    async def _batch(self, campaign: Campaign, template: Template, batch: Sequence[Recipient],
                     state: dict[str, Any], plan: AbPlan | None = None) -> int:
        """Handle one batch in one transaction; returns how many messages were queued."""
        now = datetime.now(UTC)
        ws = campaign.workspace_id
        queued = 0
        async with self.db.unit_of_work() as uow:
            done = await sends_store.sent_contacts(uow, ws, campaign.id, [r.contact_id for r in batch])
            fresh = [r for r in batch if r.contact_id not in done]
            blocked = await sends_store.suppressed(uow, ws, [r.email for r in fresh if r.email])
            docs: list[dict[str, Any]] = []
            deferred = state["deferred_until"]
            for r in fresh:
                reason = ("no_address" if not r.email else "no_consent" if not r.marketing_consent
                          else blocked.get(r.email, ""))
                send_id = str(uuid7())
                doc = partial(sends_store.send_doc, send_id=send_id, workspace_id=ws, campaign_id=campaign.id,
                              contact_id=r.contact_id, address=r.email, now=now)
                if reason:
                    docs.append(doc(status="suppressed", reason=reason))
                    continue
                quiet = rules.quiet_until(campaign.quiet_hours, now, r.time_zone)
                if quiet is not None:
                    deferred = quiet if deferred is None else min(deferred, quiet)
                    continue
                variant = plan.variant_of(campaign.id, r.contact_id) if plan else ""
                if variant is None:
                    continue  # an A/B test's remainder: it gets the winner later
                ab_fields = {"ab_test": plan.testing} if plan else {}
                try:
                    message = self._render(plan.template_for(variant) if plan and variant else template,
                                           r, ws, send_id)
                except rendering.RenderError as exc:
                    docs.append({**doc(status="failed", reason=f"render: {exc}"[:500], variant=variant),
                                 **ab_fields})
                    continue
                docs.append({**doc(status="queued", variant=variant), **ab_fields})
                uow.add(message)
                queued += 1
            await sends_store.insert_sends(uow, docs)
            state["after"], state["deferred_until"] = batch[-1].contact_id, deferred
            # The next batch waits for what this one queued to fit in the throttle.
            pause = rules.pace(queued, campaign.throttle_per_minute, 0.0)
            state["next_at"] = now + timedelta(seconds=pause) if pause else None
            await store.set_checkpoint(uow, campaign.id, dict(state))
        return queued

    def _render(self, template: Template, recipient: Recipient, workspace_id: str, send_id: str) -> Any:
        keys = {"base_url": self.base_url, "secret": self.secret, "workspace_id": workspace_id,
                "send_id": send_id}
        variables = rendering.context(recipient.contact, recipient.company, template.fields,
                                      unsubscribe_url(**keys))
        rendered = rendering.render(parts_of(template), variables)
        html, text = tracked_content(rendered.html, rendered.text, **keys)
        return wire.outbound_message(workspace_id=workspace_id, send_id=send_id,
                                     contact_id=recipient.contact_id, address=recipient.email,
                                     subject=rendered.subject, html=html, text=text,
                                     headers=unsubscribe_headers(**keys))
