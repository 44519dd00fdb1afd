"""Fan-out: one delivery per stored event and matching webhook subscription of its workspace."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from crm_partners.domain.model import PublicEvent
from crm_partners.service.deliveries import fan_out
from crm_partners.store.deliveries import WebhookSubscription

WON = "crm.pipeline.deal.won.v1"
ERASED = "crm.contacts.contact.erased.v1"


def _event(seq: int | None, workspace: str, type_: str, **data: object) -> PublicEvent:
    return PublicEvent(id=f"e{seq}", workspace_id=workspace, topic="t", type=type_, source="/crm/x",
                       subject="s", key=f"{workspace}:k{seq}", time=datetime(2026, 1, 1, tzinfo=UTC),
                       data=dict(data), seq=seq)


def test_each_event_goes_to_the_subscriptions_of_its_workspace_that_take_it() -> None:
    everything = WebhookSubscription(uuid4(), "w1", frozenset({WON, ERASED}), {})
    one_pipeline = WebhookSubscription(uuid4(), "w1", frozenset({WON, ERASED}), {"pipeline_id": "p1"})
    erasures = WebhookSubscription(uuid4(), "w1", frozenset({ERASED}), {})
    elsewhere = WebhookSubscription(uuid4(), "w2", frozenset({WON, ERASED}), {})
    events = [_event(1, "w1", WON, pipeline_id="p1"), _event(2, "w1", WON, pipeline_id="p2"),
              _event(3, "w1", ERASED, contact_id="c1")]
    found = fan_out(events, [everything, one_pipeline, erasures, elsewhere])
    assert [(d.event_seq, d.subscription_id) for d in found] == [
        (1, everything.id), (1, one_pipeline.id),
        (2, everything.id),
        # The pipeline filter does not apply to erasures, which do not publish pipeline_id.
        (3, everything.id), (3, one_pipeline.id), (3, erasures.id),
    ]
    assert {d.workspace_id for d in found} == {"w1"}
    assert found[0].key == "w1:k1"
    assert found[0].event_id == "e1"


def test_an_event_that_was_not_stored_cannot_be_delivered() -> None:
    with pytest.raises(ValueError, match="stored"):
        fan_out([_event(None, "w1", WON)], [WebhookSubscription(uuid4(), "w1", frozenset({WON}), {})])
