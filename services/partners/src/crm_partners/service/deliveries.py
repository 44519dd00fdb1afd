"""Signed webhook delivery: fan-out, the dispatcher, and what callers do with deliveries.

``enqueue`` is called by the projection inside the transaction that stores public events
(each with its ``seq`` set): one pending delivery per matching enabled webhook subscription of
an active partner. ``wake`` is called after that transaction commits.

``run`` is the dispatcher. Each round it records the attempts that ended, then claims due
deliveries with ``FOR UPDATE SKIP LOCKED`` and leases them (so replicas never send one
delivery twice at once), and sends each in its own task:

- per-key order: a delivery waits while an earlier one of its subscription and key is pending
  (in flight or waiting to be retried), so a partner receives one aggregate's events in order
  (store/deliveries keeps the waiting ones out of the due range). A delivery retried by hand,
  and a replayed one, may go beside its key's queue rather than behind it;
- concurrency: at most ``webhook_concurrency`` requests in flight in this process and
  ``webhook_per_endpoint`` per subscription; a subscription at its limit is left out of the
  claim, so a slow or failing endpoint holds only its own slots and never delays another;
- an attempt: the CloudEvent JSON, signed with every valid secret (domain/signing), POSTed by
  one shared HTTP client with the configured timeout, not following redirects, to an address
  checked again just before (domain/urls: a host re-pointed to an internal address is refused);
- its outcome: 2xx delivered; 410 Gone disables the subscription (the delivery stays pending
  and so do the later ones: enabling the subscription resumes them in order; events published
  while it is disabled get no deliveries, a replay by time range sends them); anything else
  (other status, timeout, refused address) is retried with backoff (domain/backoff) until the
  retry window ends, then the delivery is dead and shows in the DLQ. A dead delivery no longer
  holds back the later ones of its key.

Every attempt is logged (status code, latency, error) in ``delivery_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from uuid import UUID

import httpx

from crm_partners.api.caller import Caller
from crm_partners.domain.accounts import new_webhook_secret
from crm_partners.domain.backoff import Backoff
from crm_partners.domain.filters import matches
from crm_partners.domain.model import PublicEvent
from crm_partners.domain.signing import message_id, signature_headers
from crm_partners.domain.urls import UnsafeUrl, resolve_target
from crm_partners.service.accounts import visible_subscription
from crm_partners.settings import Settings
from crm_partners.store.accounts import AccountsStore
from crm_partners.store.deliveries import (
    Attempt,
    Claimed,
    DeliveriesStore,
    DeliveryRecord,
    DeliveryStatus,
    NewDelivery,
    Outcome,
    WebhookSubscription,
)
from crmkit.fields import FieldError
from crmkit.ids import uuid7
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.problems import NotFound, Problem

log = logging.getLogger(__name__)

MAX_PAGE = 100
MAX_GRACE = timedelta(days=7)
DEFAULT_GRACE = timedelta(hours=24)
# How much of a response body is read (and dropped) so the connection can be reused.
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ERROR = 300
# How often waiting deliveries that nothing is ahead of any more are moved up (those queued in
# the instant their key's head ended, and those of a subscription enabled by a PATCH), and the
# deliveries' statistics checked.
SWEEP_SECONDS = 30.0
_LOG_CURSOR = "deliveries"


def _invalid(*errors: FieldError) -> Problem:
    return Problem(422, "validation", "The request is not valid", errors=[e.as_dict() for e in errors])


@dataclass(frozen=True)
class DeliveryPage:
    items: list[DeliveryRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class Replay:
    id: UUID
    subscription_id: UUID
    deliveries: int
    created_at: datetime


@dataclass(frozen=True)
class RotatedSecret:
    secret: str
    previous_expires_at: datetime


def fan_out(events: Sequence[PublicEvent], subscriptions: Sequence[WebhookSubscription]) -> list[NewDelivery]:
    """One delivery per stored event and subscription of its workspace that chose its type and
    whose filters it passes, in the events' order."""
    by_workspace: dict[str, list[WebhookSubscription]] = {}
    for sub in subscriptions:
        by_workspace.setdefault(sub.workspace_id, []).append(sub)
    found: list[NewDelivery] = []
    for event in events:
        if event.seq is None:
            raise ValueError("only stored events (with their seq) are delivered")
        for sub in by_workspace.get(event.workspace_id, ()):
            if event.type in sub.event_types and matches(sub.filters, event):
                found.append(NewDelivery(event.workspace_id, sub.id, event.seq, event.id, event.key))
    return found


class Deliveries:
    def __init__(self, db: PgDatabase, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.backoff = Backoff(base=timedelta(seconds=settings.webhook_backoff_base_seconds),
                               cap=timedelta(seconds=settings.webhook_backoff_cap_seconds),
                               window=timedelta(hours=settings.webhook_retry_hours))
        self._wake = asyncio.Event()
        self._in_flight: dict[UUID, int] = {}
        self._ended: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # --- fan-out ---

    async def enqueue(self, uow: PgUnitOfWork, events: Sequence[PublicEvent]) -> int:
        if not events:
            return 0
        store = DeliveriesStore(uow.conn)
        subscriptions = await store.webhook_subscriptions(sorted({e.workspace_id for e in events}))
        deliveries = fan_out(events, subscriptions)
        await store.insert(deliveries)
        return len(deliveries)

    def wake(self) -> None:
        """Call after the transaction that enqueued has committed."""
        self._wake.set()

    # --- the dispatcher ---

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.settings.webhook_concurrency,
                              max_keepalive_connections=self.settings.webhook_concurrency)
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds, follow_redirects=False,
                                     limits=limits, trust_env=False) as client:
            swept = 0.0
            try:
                while True:
                    self._wake.clear()
                    try:
                        await self._record_ended()
                        if time.monotonic() - swept > SWEEP_SECONDS:
                            await self._sweep()
                            swept = time.monotonic()
                        claimed = await self._claim()
                    except Exception:
                        # A database blip: the deliveries wait in their table; try again soon.
                        log.exception("webhook dispatcher round failed")
                        claimed = []
                    for delivery, secrets in claimed:
                        task = asyncio.create_task(self._attempt(client, delivery, secrets))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    if not claimed:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_seconds)
            finally:
                for task in list(self._tasks):
                    task.cancel()

    async def _sweep(self) -> None:
        """Moves up the deliveries no longer behind anything, and keeps the table's planner
        statistics fresh (see store/deliveries)."""
        async with self.db.unit_of_work() as uow:
            store = DeliveriesStore(uow.conn)
            await store.release_heads()
            await store.analyze_if_stale()

    async def _claim(self) -> list[tuple[Claimed, list[str]]]:
        free = self.settings.webhook_concurrency - sum(self._in_flight.values())
        if free <= 0:
            return []
        per_endpoint = self.settings.webhook_per_endpoint
        busy = [sub for sub, count in self._in_flight.items() if count >= per_endpoint]
        lease = self.settings.webhook_timeout_seconds + 60
        async with self.db.unit_of_work() as uow:
            store = DeliveriesStore(uow.conn)
            chosen: list[int] = []
            taken: dict[UUID, int] = {}
            for delivery_id, sub in await store.due([*busy, *await store.paused()], free * 2):
                if len(chosen) < free and self._in_flight.get(sub, 0) + taken.get(sub, 0) < per_endpoint:
                    chosen.append(delivery_id)
                    taken[sub] = taken.get(sub, 0) + 1
            if not chosen:
                return []
            claimed = await store.lease(chosen, lease)
            secrets = await store.valid_secrets(list(taken))
        for sub, count in taken.items():
            self._in_flight[sub] = self._in_flight.get(sub, 0) + count
        return [(c, secrets.get(c.subscription_id, [])) for c in claimed]

    async def _attempt(self, client: httpx.AsyncClient, delivery: Claimed, secrets: list[str]) -> None:
        started = datetime.now(UTC)
        clock = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            target = await resolve_target(delivery.url, allow_loopback=self.settings.webhook_allow_loopback)
            body = json.dumps(delivery.event.cloudevent(), separators=(",", ":")).encode()
            headers = {
                **signature_headers(secrets, message_id(delivery.event.id, delivery.replay_id),
                                    int(time.time()), body),
                "content-type": "application/json",
                "host": target.host_header,
                "user-agent": "crm-partners-webhooks/1",
            }
            async with client.stream("POST", target.url, content=body, headers=headers) as response:
                code = response.status_code
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
        except UnsafeUrl as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:MAX_ERROR]
        except Exception as exc:  # never lose the outcome: it frees the endpoint's slot
            log.exception("webhook attempt failed")
            error = type(exc).__name__
        finally:
            latency = round((time.perf_counter() - clock) * 1000)
            self._ended.append(self._outcome(delivery, started, code, latency, error))
            self._wake.set()

    def _outcome(self, delivery: Claimed, started: datetime, code: int | None, latency: int,
                 error: str | None) -> Outcome:
        now = datetime.now(UTC)
        ended = partial(Outcome, delivery.id, delivery.subscription_id, started, code, latency,
                        key=delivery.event.key)
        if code is not None and 200 <= code < 300:
            return ended(error=None, status="delivered", next_attempt_at=now)
        if code == 410:
            return ended(error="HTTP 410", status="pending", next_attempt_at=now,
                         disable_reason=f"the endpoint answered 410 Gone at {now.isoformat()}")
        if code is not None:
            error = f"HTTP {code}"
        # Jitter spreads retries; it guards nothing, so the standard generator is right here.
        draw = random.random()  # noqa: S311
        later = self.backoff.next_attempt(delivery.attempts + 1, delivery.retry_from, now, draw)
        if later is None:
            return ended(error=error, status="dead", next_attempt_at=now)
        return ended(error=error, status="pending", next_attempt_at=later)

    async def _record_ended(self) -> None:
        if not self._ended:
            return
        ended, self._ended = self._ended, []
        try:
            async with self.db.unit_of_work() as uow:
                await DeliveriesStore(uow.conn).record(ended)
        except BaseException:
            self._ended = ended + self._ended
            raise
        for outcome in ended:
            left = self._in_flight.get(outcome.subscription_id, 0) - 1
            if left > 0:
                self._in_flight[outcome.subscription_id] = left
            else:
                self._in_flight.pop(outcome.subscription_id, None)

    # --- the delivery log, retries, the DLQ ---

    async def deliveries(self, caller: Caller, subscription_id: UUID, status: DeliveryStatus | None,
                         cursor: str | None, limit: int) -> DeliveryPage:
        """The subscription's delivery log, newest first, each with its attempts."""
        before = None
        if cursor is not None:
            try:
                before = int(decode_cursor(_LOG_CURSOR, cursor, 1)[0])
            except (InvalidCursor, ValueError, TypeError) as exc:
                raise Problem(422, "invalid-cursor", "Invalid cursor", str(InvalidCursor())) from exc
        async with self.db.pool.acquire() as conn:
            await visible_subscription(AccountsStore(conn), caller, subscription_id)
            store = DeliveriesStore(conn)
            found = await store.deliveries(caller.workspace_id, subscription_id, status, before, limit + 1)
            page = found[:limit]
            logs = await store.attempts([d.id for d in page])
        items = [_with_log(d, logs.get(d.id, [])) for d in page]
        next_cursor = encode_cursor(_LOG_CURSOR, [page[-1].id]) if len(found) > limit else None
        return DeliveryPage(items, next_cursor)

    async def delivery(self, caller: Caller, delivery_id: int) -> DeliveryRecord:
        async with self.db.pool.acquire() as conn:
            store = DeliveriesStore(conn)
            found = await store.delivery(caller.workspace_id, delivery_id)
            if found is None or not caller.sees(str(found.partner_id)):
                raise NotFound("delivery")
            return _with_log(found, (await store.attempts([delivery_id])).get(delivery_id, []))

    async def retry(self, caller: Caller, delivery_id: int) -> DeliveryRecord:
        """Sends a dead, delivered or cancelled delivery again, with a new retry window and the
        same message id. A pending one is already on its way (409)."""
        async with self.db.unit_of_work() as uow:
            store = DeliveriesStore(uow.conn)
            found = await store.delivery(caller.workspace_id, delivery_id, lock=True)
            if found is None or not caller.sees(str(found.partner_id)):
                raise NotFound("delivery")
            if found.status == "pending":
                raise Problem(409, "conflict", "Conflict", "the delivery is pending already")
            await store.requeue(caller.workspace_id, delivery_id)
        self.wake()
        return await self.delivery(caller, delivery_id)

    async def retry_dead(self, caller: Caller, subscription_id: UUID) -> int:
        """Puts every dead delivery of the subscription back in the queue; how many."""
        async with self.db.unit_of_work() as uow:
            await visible_subscription(AccountsStore(uow.conn), caller, subscription_id, lock=True)
            count = await DeliveriesStore(uow.conn).requeue_dead(caller.workspace_id, subscription_id)
        self.wake()
        return count

    # --- replays ---

    async def replay(self, caller: Caller, subscription_id: UUID, *, from_time: datetime | None = None,
                     to_time: datetime | None = None, after_event_id: str | None = None) -> Replay:
        """New deliveries (new message ids) of every stored event that the subscription takes
        now, in ``[from_time, to_time)`` or after ``after_event_id``, in feed order."""
        _check_range(from_time, to_time, after_event_id)
        replay_id = uuid7()
        count = 0
        async with self.db.unit_of_work() as uow:
            sub = await visible_subscription(AccountsStore(uow.conn), caller, subscription_id, lock=True)
            if sub.delivery != "webhook":
                raise _invalid(FieldError("subscription", "only webhook subscriptions are replayed; "
                                                          "the pull API reads from any cursor"))
            store = DeliveriesStore(uow.conn)
            after_seq = None
            if after_event_id is not None:
                after_seq = await store.event_seq(caller.workspace_id, after_event_id)
                if after_seq is None:
                    raise _invalid(FieldError("after_event_id", "no stored event of this workspace has it"))
            target = WebhookSubscription(sub.id, sub.workspace_id, frozenset(sub.event_types), sub.filters)
            async for chunk in store.stored_events(caller.workspace_id, sorted(target.event_types),
                                                   after_seq=after_seq, from_time=from_time, to_time=to_time,
                                                   with_data=bool(sub.filters)):
                deliveries = fan_out(chunk, [target])
                await store.insert(deliveries, replay_id)
                count += len(deliveries)
            created = await store.insert_replay(replay_id, caller.workspace_id, subscription_id, from_time,
                                                to_time, after_event_id, caller.subject, count)
        self.wake()
        return Replay(replay_id, subscription_id, count, created)

    # --- secrets and enabling ---

    async def rotate_secret(self, caller: Caller, subscription_id: UUID, grace: timedelta) -> RotatedSecret:
        """A new signing secret (returned this once); the valid ones keep signing for ``grace``."""
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise _invalid(FieldError("grace_seconds", f"between 0 and {int(MAX_GRACE.total_seconds())}"))
        secret = new_webhook_secret()
        until = datetime.now(UTC) + grace
        async with self.db.unit_of_work() as uow:
            sub = await visible_subscription(AccountsStore(uow.conn), caller, subscription_id, lock=True)
            if sub.delivery != "webhook":
                raise _invalid(FieldError("subscription", "only webhook subscriptions have signing secrets"))
            await DeliveriesStore(uow.conn).rotate_secret(subscription_id, uuid7(), secret, until)
        return RotatedSecret(secret, until)

    async def enable(self, caller: Caller, subscription_id: UUID) -> None:
        """Enables a disabled subscription (after a 410, say): its pending deliveries resume."""
        async with self.db.unit_of_work() as uow:
            await visible_subscription(AccountsStore(uow.conn), caller, subscription_id, lock=True)
            store = DeliveriesStore(uow.conn)
            await store.enable(caller.workspace_id, subscription_id)
            await store.release_heads(subscription_id)
        self.wake()


def _with_log(record: DeliveryRecord, attempts: Sequence[Attempt]) -> DeliveryRecord:
    return replace(record, log=tuple(attempts))


def _check_range(from_time: datetime | None, to_time: datetime | None, after_event_id: str | None) -> None:
    if after_event_id is not None:
        if from_time is not None or to_time is not None:
            raise _invalid(FieldError("after_event_id", "either a time range or an event id, not both"))
        return
    if from_time is None or to_time is None:
        raise _invalid(FieldError("from_time", "from_time and to_time, or after_event_id, are required"))
    if from_time.tzinfo is None or to_time.tzinfo is None:
        raise _invalid(FieldError("from_time", "times need their UTC offset"))
    if from_time >= to_time:
        raise _invalid(FieldError("to_time", "must be after from_time"))
