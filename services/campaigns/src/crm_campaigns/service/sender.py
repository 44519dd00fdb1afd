"""The sender: a background task that sends running campaigns, batch by batch.

For each campaign that is ``sending`` (or ``scheduled`` and due, which it starts) the sender
holds a lease (one sender per campaign across replicas) and streams the audience from
contacts in contact id order. Per batch: the sends already made are skipped, recipients
without an address, without email marketing consent or on the suppression list get a
``suppressed`` send (with the reason), the others a ``queued`` send and a rendered message;
then, in ONE transaction, the batch's send documents are inserted and the checkpoint (the last
contact id handled, ``after``) moves. The unique (workspace, campaign, contact) index on sends
makes a second send to anyone impossible, whatever crashes; the checkpoint only saves
streaming again from the start.

The batch's OutboundMessages are then handed to the broker straight from memory (every ack
awaited) and the checkpoint's ``handed`` catches up with ``after``. The queued send documents
are the outbox: if the process dies between the commit and the acks, the next pass starts
from ``handed``, and each send of the unconfirmed stretch still ``queued`` is rendered again
under its own send id (the message id, which ingest delivers once) and handed over again.
The three steps overlap across batches (``_Shipping``): batch N+1 is rendered while the
database commits batch N and the broker takes batch N-1, so the campaigns process, the
database and the broker work at once instead of in turn; commits and hand-overs each stay in
batch order, so the unconfirmed stretch after a crash is at most two batches.
Going through crmkit's outbox instead cost a second 2 KB document per message, read and
deleted again by the relay: on SecantusDB that reading and deleting took more of the server
than the batches' transactions themselves (see bench/README.md, ``campaigns_fanout.py``).

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
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
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
from crmkit.kafka import Event
from crmkit.kafka.producer import Producer
from crmkit.mongo import MongoDatabase
from crmkit.relay import send_all

log = logging.getLogger(__name__)


async def _read_ahead(source: AsyncGenerator[Recipient, None], ahead: int) -> AsyncGenerator[Recipient, None]:
    """``source``, read by a task of its own up to ``ahead`` recipients in advance: contacts
    streams the next batch while this one is written and handed over, instead of waiting."""
    queue: asyncio.Queue[Recipient | None] = asyncio.Queue(ahead)

    async def pump() -> None:
        # The end is marked by None, also after an error (awaiting the task raises it), never
        # after a cancel: the reader has gone, and a full queue would hold the task forever.
        try:
            async for recipient in source:
                await queue.put(recipient)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await queue.put(None)
            raise
        await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while (recipient := await queue.get()) is not None:
            yield recipient
        await task
    finally:
        task.cancel()  # stopped early (pause, cancel, an error): the stream is not read on
        await asyncio.gather(task, return_exceptions=True)
        await source.aclose()


@dataclass(frozen=True)
class _Batch:
    """A prepared batch: what ``_commit`` writes and ``_hand_over`` hands to the broker."""

    campaign_id: str
    docs: list[dict[str, Any]]
    messages: list[tuple[str, Event]]
    checkpoint: dict[str, Any]  # the campaign's checkpoint once this batch is committed
    state: dict[str, Any]  # the pass's live state (its ``handed`` moves as batches are handed over)
    now: datetime


class _Shipping:
    """Prepared batches on their way out, so that the next batch is rendered while the database
    commits this one and the broker takes the one before: each batch is committed after the
    batch before it, and handed over after its own commit and the batch before's hand-over, so
    the checkpoint's ``after`` and ``handed`` only move forward. At most two batches are
    between preparing and handed over; the first failure stops the pass (``ship`` and
    ``finish`` raise it) and the next pass resumes from the checkpoint."""

    def __init__(self, commit: Callable[[_Batch], Awaitable[None]],
                 hand_over: Callable[[_Batch], Awaitable[None]]) -> None:
        self.commit = commit
        self.hand_over = hand_over
        self.committed: asyncio.Task[None] | None = None
        self.handing: deque[asyncio.Task[None]] = deque()

    async def ship(self, batch: _Batch) -> None:
        committed = asyncio.create_task(self._commit_after(self.committed, batch))
        handed = asyncio.create_task(self._hand_over_after(
            self.handing[-1] if self.handing else None, committed, batch))
        self.committed = committed
        self.handing.append(handed)
        while len(self.handing) > 1:
            await self.handing.popleft()

    async def finish(self) -> None:
        """Wait until every shipped batch is handed over (each hand-over awaits its commit)."""
        while self.handing:
            await self.handing.popleft()

    async def abandon(self) -> None:
        """After a failure or a cancel: stop what is still on its way (the checkpoint says what
        the next pass must redo)."""
        tasks = [t for t in (*self.handing, self.committed) if t is not None]
        self.handing.clear()
        self.committed = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _commit_after(self, before: asyncio.Task[None] | None, batch: _Batch) -> None:
        if before is not None:
            await before
        await self.commit(batch)

    async def _hand_over_after(self, before: asyncio.Task[None] | None, committed: asyncio.Task[None],
                               batch: _Batch) -> None:
        if before is not None:
            await before
        await committed
        await self.hand_over(batch)


class Sender:
    LEASE_SECONDS = 60.0

    def __init__(self, db: MongoDatabase, audiences: Audiences, producer: Producer, *, base_url: str,
                 secret: str, batch_size: int = 1000, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.audiences = audiences
        self.producer = producer
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
        after = checkpoint.get("after", "")
        state: dict[str, Any] = {"pass": checkpoint.get("pass", 0), "after": after,
                                 "handed": checkpoint.get("handed", ""),
                                 "deferred_until": checkpoint.get("deferred_until"),
                                 "next_at": checkpoint.get("next_at")}
        # The last batch before a crash may have been committed but not handed over: its queued
        # sends, up to ``redo_until``, are handed over again.
        redo_until = after if state["handed"] < after else ""
        size = rules.batch_size(campaign.throttle_per_minute, self.batch_size)
        await self._wait_until(campaign, state["next_at"])  # the throttle holds across restarts
        batch: list[Recipient] = []
        templates = [template, *(plan.templates.values() if plan else ())]
        details = any(rendering.reads_company_details(parts_of(t)) for t in templates)
        members = _read_ahead(self.audiences.members(workspace_id, campaign.audience.segments,
                                                     campaign.audience.exclude, company_details=details),
                              2 * size)
        shipping = _Shipping(self._commit, self._hand_over)
        try:
            async for recipient in members:
                if state["handed"] and recipient.contact_id <= state["handed"]:
                    continue
                batch.append(recipient)
                if len(batch) < size:
                    continue
                await shipping.ship(await self._prepare(campaign, template, batch, state, plan, redo_until))
                batch = []
                await self._wait_until(campaign, state["next_at"])
                if not await self._still_sending(campaign):
                    await shipping.finish()
                    return
            if batch:
                await shipping.ship(await self._prepare(campaign, template, batch, state, plan, redo_until))
            await shipping.finish()
        finally:
            await shipping.abandon()
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

    async def _prepare(self, campaign: Campaign, template: Template, batch: Sequence[Recipient],
                       state: dict[str, Any], plan: AbPlan | None = None, redo_until: str = "") -> _Batch:
        """One batch's send documents and messages, rendered, and the checkpoint after it;
        nothing is written yet (``_commit`` does). Reading outside the transaction is safe: one
        sender holds the campaign, and the unique index refuses a second send to anyone."""
        now = datetime.now(UTC)
        ws = campaign.workspace_id
        messages: list[tuple[str, Event]] = []
        async with self.db.unit_of_work() as uow:
            existing = await sends_store.existing_sends(uow, ws, campaign.id, [r.contact_id for r in batch])
            fresh = [r for r in batch if r.contact_id not in existing]
            blocked = await sends_store.suppressed(uow, ws, [r.email for r in fresh if r.email])
        docs: list[dict[str, Any]] = []
        deferred = state["deferred_until"]
        for r in batch:
            send = existing.get(r.contact_id)
            if send is None:
                continue
            if send["status"] == "queued" and r.contact_id <= redo_until:
                variant = send.get("variant", "")
                try:
                    messages.append((send["_id"], self._render(
                        plan.template_for(variant) if plan and variant else template,
                        replace(r, email=send["address"]), ws, send["_id"])))
                except rendering.RenderError:
                    log.warning("a queued message of campaign %s no longer renders", campaign.id)
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
            messages.append((send_id, message))
        state["after"], state["deferred_until"] = batch[-1].contact_id, deferred
        # The next batch waits for what this one queued to fit in the throttle.
        pause = rules.pace(len(messages), campaign.throttle_per_minute, 0.0)
        state["next_at"] = now + timedelta(seconds=pause) if pause else None
        return _Batch(campaign.id, docs, messages, dict(state), state, now)

    async def _commit(self, batch: _Batch) -> None:
        """The batch's send documents and the checkpoint after it, in one transaction."""
        async with self.db.unit_of_work() as uow:
            await sends_store.insert_sends(uow, batch.docs)
            await store.set_checkpoint(uow, batch.campaign_id, batch.checkpoint)

    async def _hand_over(self, batch: _Batch) -> None:
        """The committed batch's messages onto the broker, then ``handed`` up to its end."""
        await self._hand_off(batch.messages, batch.now)
        after = batch.checkpoint["after"]
        batch.state["handed"] = after
        await store.set_handed(self.db, batch.campaign_id, batch.checkpoint["pass"], after)

    async def _hand_off(self, messages: Sequence[tuple[str, Event]], now: datetime) -> None:
        """Every message on the broker, acknowledged; a failure raises (the pass stops and the
        next one hands the batch over again). A message the broker can never take (larger than
        it accepts) fails its send instead of stopping the campaign for good."""
        unsendable = await send_all(self.producer, messages, lambda item: item[1])
        if unsendable:
            await sends_store.fail_queued(self.db, {send_id: reason for (send_id, _), reason in unsendable},
                                          now)

    def _render(self, template: Template, recipient: Recipient, workspace_id: str, send_id: str) -> Event:
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
