"""The rules of stages and deals: probabilities, line item totals, amount consistency, stage
moves, winning and losing, archiving a stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from crm_pipeline.domain import deals as rules
from crm_pipeline.domain.deals import LineItemDraft, StageDraft
from crm_pipeline.domain.errors import Conflict, InvalidFields
from crm_pipeline.domain.model import (
    CloseReason,
    Deal,
    DealStatus,
    LineItem,
    Participant,
    Pipeline,
    Stage,
    StageKind,
)
from crm_pipeline.domain.money import MAX_MINOR
from crmkit.fields import FieldDefinition, FieldType

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def pipeline(*, won: bool = True, lost: bool = True) -> Pipeline:
    pid = uuid4()
    stages = [Stage(uuid4(), pid, "Lead", 0, 10), Stage(uuid4(), pid, "Proposal", 1, 50, rotting_days=14)]
    if won:
        stages.append(Stage(uuid4(), pid, "Won", 2, 100, StageKind.WON))
    if lost:
        stages.append(Stage(uuid4(), pid, "Lost", 3, 0, StageKind.LOST))
    return Pipeline(pid, "ws", "Sales", 0, tuple(stages))


def deal(p: Pipeline, **kwargs: object) -> Deal:
    fields: dict[str, object] = {"title": "Acme", "amount_minor": 1000, "currency": "EUR",
                                 "stage_entered_at": NOW - timedelta(hours=3)}
    fields.update(kwargs)
    return Deal(uuid4(), "ws", p.id, p.stages[0].id, **fields)  # type: ignore[arg-type]


def fields_of(exc: pytest.ExceptionInfo[InvalidFields]) -> set[str]:
    return {e.field for e in exc.value.errors}


# --- stages ---


@pytest.mark.parametrize(("draft", "bad"), [
    (StageDraft("Lead", 101), "probability"),
    (StageDraft("Lead", -1), "probability"),
    (StageDraft("Won", 90, StageKind.WON), "probability"),
    (StageDraft("Lost", 5, StageKind.LOST), "probability"),
    (StageDraft(" ", 10), "name"),
    (StageDraft("Lead", 10, rotting_days=0), "rotting_days"),
])
def test_bad_stages_are_named(draft: StageDraft, bad: str) -> None:
    assert [e.field for e in rules.check_stage(draft)] == [bad]


def test_probability_defaults_by_kind_and_edges_are_allowed() -> None:
    assert StageDraft("Won", kind=StageKind.WON).resolved_probability() == 100
    assert StageDraft("Lost", kind=StageKind.LOST).resolved_probability() == 0
    assert rules.check_stage(StageDraft("Sure", 100)) == []
    assert rules.check_stage(StageDraft("Hopeless", 0)) == []


def test_a_pipeline_needs_an_open_stage_and_at_most_one_won_and_lost() -> None:
    assert rules.check_stage_set([StageKind.WON, StageKind.LOST])
    assert rules.check_stage_set([StageKind.OPEN, StageKind.WON, StageKind.WON])
    assert rules.check_stage_set([])
    assert rules.check_stage_set([StageKind.OPEN, StageKind.WON, StageKind.LOST]) == []


def test_a_reorder_names_every_active_stage_once() -> None:
    p = pipeline()
    ids = [s.id for s in p.stages]
    assert rules.check_reorder(p, list(reversed(ids))) == []
    assert rules.check_reorder(p, ids[:-1])
    assert rules.check_reorder(p, [*ids, ids[0]])
    assert rules.check_reorder(p, [*ids[:-1], uuid4()])


def test_archiving_a_stage_with_open_deals_needs_an_open_target_of_the_same_pipeline() -> None:
    p = pipeline()
    lead, proposal, won, _ = p.stages
    with pytest.raises(InvalidFields) as missing:
        rules.check_archive_stage(p, lead, 2, None)
    assert fields_of(missing) == {"move_deals_to"}
    for target in (won.id, lead.id, uuid4(), pipeline().stages[0].id):
        with pytest.raises(InvalidFields):
            rules.check_archive_stage(p, lead, 2, target)
    assert rules.check_archive_stage(p, lead, 2, proposal.id) == proposal
    assert rules.check_archive_stage(p, lead, 0, None) is None


def test_the_last_open_stage_is_never_archived() -> None:
    p = pipeline()
    only_open = Pipeline(p.id, "ws", "x", 0, (p.stages[0], p.stages[2]))
    with pytest.raises(InvalidFields) as refused:
        rules.check_archive_stage(only_open, p.stages[0], 0, None)
    assert fields_of(refused) == {"stage_id"}


# --- line items and the amount ---


def test_line_totals_are_quantity_times_unit_price_minus_discount() -> None:
    items = [LineItem("Seat", 3, 1999, 500), LineItem("Setup", 1, 10000)]
    assert [i.total_minor for i in items] == [5497, 10000]
    assert rules.line_items_total(items) == 15497
    assert rules.line_items_total([]) == 0


def test_the_amount_follows_the_line_items_and_must_agree_with_them() -> None:
    items = [LineItem("Seat", 2, 1000, 100)]
    assert rules.settle_amount(None, items, 5) == 1900
    assert rules.settle_amount(1900, items, 5) == 1900
    with pytest.raises(InvalidFields) as disagree:
        rules.settle_amount(2000, items, 5)
    assert fields_of(disagree) == {"amount_minor"}
    assert rules.settle_amount(None, [], 5) == 5
    assert rules.settle_amount(7, None, 5) == 7


@pytest.mark.parametrize(("draft", "bad"), [
    (LineItemDraft("Seat", 0, 100), "line_items[0].quantity"),
    (LineItemDraft("Seat", 1, -1), "line_items[0].unit_price_minor"),
    (LineItemDraft("Seat", 1, 100, -1), "line_items[0].discount_minor"),
    (LineItemDraft("Seat", 2, 100, 201), "line_items[0].discount_minor"),
    (LineItemDraft("Seat", 1, 100, currency="USD"), "line_items[0].currency"),
    (LineItemDraft("", 1, 100), "line_items[0].product"),
])
def test_bad_line_items_are_named(draft: LineItemDraft, bad: str) -> None:
    assert [e.field for e in rules.check_line_items([draft], "EUR")] == [bad]


def test_line_items_in_the_deals_currency_or_none_are_fine() -> None:
    assert rules.check_line_items([LineItemDraft("Seat", 1, 100, currency="EUR"),
                                   LineItemDraft("Setup", 1, 100)], "EUR") == []


def test_a_total_beyond_a_bigint_is_refused() -> None:
    errors = rules.check_line_items([LineItemDraft("a", 2, MAX_MINOR // 2 + 1)], "EUR")
    assert [e.field for e in errors] == ["line_items"]


# --- revising a deal ---


def test_revise_names_every_bad_field_at_once() -> None:
    p = pipeline()
    with pytest.raises(InvalidFields) as bad:
        rules.revise(deal(p), {"title": "", "amount_minor": -5, "currency": "EURO", "tags": ["x" * 51],
                               "custom_fields": {"nope": 1}, "stage_id": p.stages[1].id}, p, {})
    assert fields_of(bad) == {"stage_id"}  # an unknown field alone is refused first
    with pytest.raises(InvalidFields) as bad:
        rules.revise(deal(p), {"title": "", "amount_minor": -5, "currency": "EURO", "tags": ["x" * 51],
                               "custom_fields": {"nope": 1}}, p, {})
    assert fields_of(bad) == {"title", "amount_minor", "currency", "tags", "custom_fields.nope"}


def test_revise_recomputes_the_amount_from_line_items_and_lists_changes() -> None:
    p = pipeline()
    plan = FieldDefinition("deal", "plan", "Plan", FieldType.ENUM, ("pro", "team"))
    revised, changed = rules.revise(
        deal(p), {"line_items": [LineItemDraft("Seat", 3, 1000)], "custom_fields": {"plan": "pro"},
                  "tags": [" hot ", "hot", "q3"]}, p, {"plan": plan})
    assert revised.amount_minor == 3000
    assert revised.tags == ("hot", "q3")
    assert changed == ["amount_minor", "line_items", "tags", "custom_fields.plan"]
    cleared, changed = rules.revise(revised, {"custom_fields": {"plan": None}}, p, {"plan": plan})
    assert cleared.custom_fields == {}
    assert changed == ["custom_fields.plan"]


def test_a_currency_change_under_line_items_needs_them_again() -> None:
    p = pipeline()
    with_items = deal(p, line_items=(LineItem("Seat", 1, 1000),))
    with pytest.raises(InvalidFields) as refused:
        rules.revise(with_items, {"currency": "USD"}, p, {})
    assert fields_of(refused) == {"currency"}
    in_dollars = [LineItemDraft("Seat", 1, 900, 0, "USD")]
    moved, _ = rules.revise(with_items, {"currency": "USD", "line_items": in_dollars}, p, {})
    assert (moved.currency, moved.amount_minor) == ("USD", 900)


def test_an_amount_that_disagrees_with_the_stored_line_items_is_refused() -> None:
    p = pipeline()
    with pytest.raises(InvalidFields) as refused:
        rules.revise(deal(p, line_items=(LineItem("Seat", 1, 1000),)), {"amount_minor": 5}, p, {})
    assert fields_of(refused) == {"amount_minor"}


def test_participants_are_each_once() -> None:
    p = pipeline()
    someone = uuid4()
    with pytest.raises(InvalidFields) as refused:
        rules.revise(deal(p), {"participants": [Participant(someone), Participant(someone, "champion")]},
                     p, {})
    assert fields_of(refused) == {"participants"}


# --- moves, winning, losing ---


def test_a_new_deal_starts_in_the_first_open_stage_or_a_given_open_one() -> None:
    p = pipeline()
    assert rules.initial_stage(p, None) == p.stages[0]
    assert rules.initial_stage(p, p.stages[1].id) == p.stages[1]
    for stage_id in (p.stages[2].id, pipeline().stages[0].id):
        with pytest.raises(InvalidFields) as refused:
            rules.initial_stage(p, stage_id)
        assert fields_of(refused) == {"stage_id"}


def test_a_move_records_the_time_spent_in_the_stage_left() -> None:
    p = pipeline()
    moved, change = rules.move(deal(p), p, p.stages[1].id, NOW, "alice")
    assert change is not None
    assert (change.from_stage_id, change.to_stage_id) == (p.stages[0].id, p.stages[1].id)
    assert change.actor == "alice"
    assert change.seconds_in_from == 3 * 3600
    assert (moved.stage_id, moved.stage_entered_at) == (p.stages[1].id, NOW)


def test_a_move_to_the_same_stage_changes_nothing() -> None:
    p = pipeline()
    d = deal(p)
    assert rules.move(d, p, d.stage_id, NOW, "alice") == (d, None)


@pytest.mark.parametrize("which", [2, 3])
def test_won_and_lost_stages_are_reached_only_by_closing(which: int) -> None:
    p = pipeline()
    with pytest.raises(InvalidFields) as refused:
        rules.move(deal(p), p, p.stages[which].id, NOW, "alice")
    assert fields_of(refused) == {"stage_id"}


def test_a_stage_of_another_pipeline_is_refused() -> None:
    p = pipeline()
    with pytest.raises(InvalidFields):
        rules.move(deal(p), p, pipeline().stages[1].id, NOW, "alice")


def reason(kind: DealStatus, archived: bool = False) -> CloseReason:
    return CloseReason(uuid4(), kind, f"{kind.value} reason", archived)


def test_winning_moves_to_the_won_stage_with_reason_and_note() -> None:
    p = pipeline()
    why = reason(DealStatus.WON)
    won, change = rules.close(deal(p), p, DealStatus.WON, why, [why], "signed", NOW, "alice")
    assert (won.status, won.stage_id, won.close_reason_id, won.close_note, won.closed_at) == (
        DealStatus.WON, p.stages[2].id, why.id, "signed", NOW)
    assert change is not None
    assert change.to_stage_id == p.stages[2].id


def test_losing_moves_to_the_lost_stage() -> None:
    p = pipeline()
    lost, _ = rules.close(deal(p), p, DealStatus.LOST, None, [], None, NOW, "alice")
    assert (lost.status, lost.stage_id) == (DealStatus.LOST, p.stages[3].id)


def test_winning_without_a_won_stage_is_refused() -> None:
    p = pipeline(won=False)
    with pytest.raises(InvalidFields) as refused:
        rules.close(deal(p), p, DealStatus.WON, None, [], None, NOW, "alice")
    assert fields_of(refused) == {"stage"}


def test_a_reason_is_required_once_the_workspace_has_some_and_must_be_of_the_kind() -> None:
    p = pipeline()
    won_reason, lost_reason = reason(DealStatus.WON), reason(DealStatus.LOST)
    with pytest.raises(InvalidFields) as missing:
        rules.close(deal(p), p, DealStatus.WON, None, [won_reason], None, NOW, "alice")
    assert fields_of(missing) == {"reason_id"}
    with pytest.raises(InvalidFields) as wrong_kind:
        rules.close(deal(p), p, DealStatus.WON, lost_reason, [won_reason, lost_reason], None, NOW, "alice")
    assert fields_of(wrong_kind) == {"reason_id"}
    archived = reason(DealStatus.WON, archived=True)
    with pytest.raises(InvalidFields):
        rules.close(deal(p), p, DealStatus.WON, archived, [archived], None, NOW, "alice")
    # Only archived reasons: none is required.
    rules.close(deal(p), p, DealStatus.WON, None, [archived], None, NOW, "alice")


def test_a_closed_deal_is_not_closed_again_but_reopens_by_a_move() -> None:
    p = pipeline()
    won, _ = rules.close(deal(p), p, DealStatus.WON, None, [], None, NOW, "alice")
    with pytest.raises(Conflict):
        rules.close(won, p, DealStatus.LOST, None, [], None, NOW, "alice")
    reopened, change = rules.move(won, p, p.stages[1].id, NOW + timedelta(minutes=1), "bob")
    assert change is not None
    assert change.seconds_in_from == 60
    assert (reopened.status, reopened.close_reason_id, reopened.closed_at) == (DealStatus.OPEN, None, None)


def test_ids_stay_uuids() -> None:
    assert isinstance(pipeline().stages[0].id, UUID)
