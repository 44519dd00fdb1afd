"""Proto <-> domain mapping for pipeline's deals, and the builders of the events it publishes
on crm.pipeline.v1 (keyed by workspace and deal id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from google.protobuf import struct_pb2

from crm.pipeline.v1 import events_pb2
from crm_pipeline.domain import events
from crm_pipeline.domain.activities import Activity, RottingDeal
from crm_pipeline.domain.model import CloseReason, Deal, DealStatus, StageChange
from crm_pipeline.domain.scoring import Score
from crmkit.kafka import Event, make_event
from crmkit.topics import PIPELINE


def deal_to_proto(deal: Deal, probability: int) -> events_pb2.Deal:
    custom = struct_pb2.Struct()
    custom.update(deal.custom_fields)
    message = events_pb2.Deal(
        id=str(deal.id), workspace_id=deal.workspace_id, pipeline_id=str(deal.pipeline_id),
        stage_id=str(deal.stage_id), title=deal.title, amount_minor=deal.amount_minor, currency=deal.currency,
        expected_close_date=deal.expected_close_date.isoformat() if deal.expected_close_date else "",
        owner_id=deal.owner_id or "", contact_id=str(deal.contact_id or ""),
        company_id=str(deal.company_id or ""), status=f"DEAL_STATUS_{deal.status.name}",
        close_reason_id=str(deal.close_reason_id or ""), close_note=deal.close_note or "",
        custom_fields=custom, tags=list(deal.tags),
        participants=[events_pb2.DealParticipant(contact_id=str(p.contact_id), role=p.role)
                      for p in deal.participants],
        line_items=[events_pb2.DealLineItem(product=i.product, quantity=i.quantity,
                                            unit_price_minor=i.unit_price_minor,
                                            discount_minor=i.discount_minor) for i in deal.line_items],
        version=deal.version, probability=probability)
    for name in ("closed_at", "stage_entered_at", "created_at", "updated_at"):
        value = getattr(deal, name)
        if value is not None:
            getattr(message, name).FromDatetime(value)
    return message


def _event(type_: str, deal: Deal, payload: events_pb2.DealCreated | events_pb2.DealUpdated
           | events_pb2.DealStageChanged | events_pb2.DealWon | events_pb2.DealLost) -> Event:
    return make_event(topic=PIPELINE, type=type_, source=events.SOURCE, workspace=deal.workspace_id,
                      subject=str(deal.id), payload=payload)


def deal_created(deal: Deal, probability: int, actor: str) -> Event:
    return _event(events.DEAL_CREATED, deal,
                  events_pb2.DealCreated(deal=deal_to_proto(deal, probability), actor=actor))


def deal_updated(deal: Deal, probability: int, changed: Sequence[str], actor: str) -> Event:
    return _event(events.DEAL_UPDATED, deal, events_pb2.DealUpdated(
        deal=deal_to_proto(deal, probability), changed=list(changed), actor=actor))


def deal_stage_changed(deal: Deal, probability: int, change: StageChange) -> Event:
    return _event(events.DEAL_STAGE_CHANGED, deal, events_pb2.DealStageChanged(
        deal=deal_to_proto(deal, probability), from_stage_id=str(change.from_stage_id or ""),
        to_stage_id=str(change.to_stage_id), seconds_in_from=change.seconds_in_from or 0, actor=change.actor))


def deal_closed(deal: Deal, probability: int, reason: CloseReason | None, actor: str) -> Event:
    """DealWon or DealLost, by the deal's status."""
    message = deal_to_proto(deal, probability)
    reason_id, label = (str(reason.id), reason.label) if reason else ("", "")
    note = deal.close_note or ""
    if deal.status is DealStatus.WON:
        return _event(events.DEAL_WON, deal, events_pb2.DealWon(
            deal=message, reason_id=reason_id, reason=label, note=note, actor=actor))
    return _event(events.DEAL_LOST, deal, events_pb2.DealLost(
        deal=message, reason_id=reason_id, reason=label, note=note, actor=actor))


def lead_score_changed(workspace_id: str, contact_id: UUID, old: Decimal, new: Score, model_version: int,
                       at: datetime, crossed: Sequence[Decimal]) -> Event:
    """crm.pipeline.lead.score_changed.v1, keyed by workspace and contact id."""
    top = [events_pb2.LeadScoreContribution(rule_id=c.rule_id, kind=c.kind, points=float(c.points),
                                            event_count=c.event_count) for c in new.top(5)]
    message = events_pb2.LeadScoreChanged(
        workspace_id=workspace_id, contact_id=str(contact_id), old_score=float(old),
        new_score=float(new.value), model_version=model_version,
        crossed_thresholds=[float(t) for t in crossed], top_contributions=top)
    message.computed_at.FromDatetime(at)
    return make_event(topic=PIPELINE, type=events.LEAD_SCORE_CHANGED, source=events.SOURCE,
                      workspace=workspace_id, subject=str(contact_id), payload=message)


def activity_to_proto(activity: Activity) -> events_pb2.Activity:
    message = events_pb2.Activity(
        id=str(activity.id), workspace_id=activity.workspace_id, kind=activity.kind.value,
        subject=activity.subject, deal_id=str(activity.deal_id or ""),
        contact_id=str(activity.contact_id or ""),
        owner_id=activity.owner_id or "", completed_by=activity.completed_by or "",
        interaction_id=activity.interaction_id or "", version=activity.version)
    for name in ("due_at", "completed_at", "created_at", "updated_at"):
        value = getattr(activity, name)
        if value is not None:
            getattr(message, name).FromDatetime(value)
    return message


def activity_event(type_: str, activity: Activity, actor: str, changed: Sequence[str] = ()) -> Event:
    """crm.pipeline.activity.created|updated|completed|deleted.v1, keyed by workspace and the
    activity's deal (so it stays in order with the deal's events), else the activity."""
    payload: events_pb2.ActivityCreated | events_pb2.ActivityUpdated | events_pb2.ActivityCompleted \
        | events_pb2.ActivityDeleted
    proto = activity_to_proto(activity)
    if type_ == events.ACTIVITY_UPDATED:
        payload = events_pb2.ActivityUpdated(activity=proto, changed=list(changed), actor=actor)
    elif type_ == events.ACTIVITY_CREATED:
        payload = events_pb2.ActivityCreated(activity=proto, actor=actor)
    elif type_ == events.ACTIVITY_COMPLETED:
        payload = events_pb2.ActivityCompleted(activity=proto, actor=actor)
    else:
        payload = events_pb2.ActivityDeleted(activity=proto, actor=actor)
    return make_event(topic=PIPELINE, type=type_, source=events.SOURCE, workspace=activity.workspace_id,
                      subject=str(activity.deal_id or activity.id), payload=payload)


def deal_rotting(deal: RottingDeal) -> Event:
    """crm.pipeline.deal.rotting.v1, keyed by workspace and deal id."""
    message = events_pb2.DealRotting(
        deal_id=str(deal.id), workspace_id=deal.workspace_id, pipeline_id=str(deal.pipeline_id),
        stage_id=str(deal.stage_id), owner_id=deal.owner_id or "", contact_id=str(deal.contact_id or ""),
        rotting_days=deal.rotting_days)
    message.quiet_since.FromDatetime(deal.since)
    message.rotting_since.FromDatetime(deal.since + timedelta(days=deal.rotting_days))
    return make_event(topic=PIPELINE, type=events.DEAL_ROTTING, source=events.SOURCE,
                      workspace=deal.workspace_id, subject=str(deal.id), payload=message)
