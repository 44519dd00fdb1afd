"""A/B tests: validation, deterministic assignment, exact test shares, the winner rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_campaigns.domain.ab import (
    REMAINDER,
    AbTest,
    Variant,
    assign,
    assign_by_cuts,
    cut_points,
    message_of,
    pick_winner,
    results,
    split,
    validate_test,
)

TEST = AbTest((Variant("A", 10, subject="Hello"), Variant("B", 10, template_id="t2")), "open", 60)


def test_a_valid_body_becomes_a_test() -> None:
    test, errors = validate_test({"variants": [{"name": "A", "share_percent": 10, "subject": "Hi"},
                                               {"name": "B", "share_percent": 10, "template_id": "t2"}],
                                  "metric": "click", "decide_after": 120})
    assert errors == []
    assert test is not None
    assert test.metric == "click"
    assert [v.name for v in test.variants] == ["A", "B"]


def test_every_bad_field_is_named() -> None:
    test, errors = validate_test({"variants": [{"name": "A", "share_percent": 0, "subject": "Hi",
                                                "template_id": "x"},
                                               {"name": "A", "share_percent": 60}],
                                  "metric": "reply", "decide_after": 0})
    assert test is None
    fields = {e.field for e in errors}
    assert fields == {"variants[0].share_percent", "variants[0]", "variants[1].name",
                      "variants[1].share_percent", "variants[1]", "metric", "decide_after"}


def test_one_variant_is_not_a_test() -> None:
    _, errors = validate_test({"variants": [{"name": "A", "share_percent": 10, "subject": "Hi"}]})
    assert [e.field for e in errors] == ["variants"]


def test_assignment_is_deterministic_and_depends_on_the_campaign() -> None:
    ids = [f"c{i}" for i in range(2000)]
    first = [assign(TEST, "camp1", c) for c in ids]
    assert first == [assign(TEST, "camp1", c) for c in ids]
    assert first != [assign(TEST, "camp2", c) for c in ids]
    share_a = first.count("A") / len(ids)
    assert 0.07 < share_a < 0.13
    assert 0.74 < first.count(REMAINDER) / len(ids) < 0.86


def test_split_gives_each_variant_its_exact_share() -> None:
    ids = [f"contact-{i}" for i in range(40)]
    groups = split(TEST, "camp", ids)
    assert len(groups["A"]) == 4
    assert len(groups["B"]) == 4
    assert len(groups[REMAINDER]) == 32
    assert set(groups["A"]) | set(groups["B"]) | set(groups[REMAINDER]) == set(ids)
    assert split(TEST, "camp", list(reversed(ids))) == groups
    cuts = cut_points(TEST, "camp", ids)
    assert {c: assign_by_cuts(TEST, cuts, "camp", c) for c in ids} == {
        c: name for name, members in groups.items() for c in members}


def test_the_best_rate_wins_and_a_tie_goes_to_the_first() -> None:
    assert pick_winner(TEST, {"A": {"sent": 4, "opened": 1}, "B": {"sent": 4, "opened": 3}}) == "B"
    assert pick_winner(TEST, {"A": {"sent": 4, "opened": 2}, "B": {"sent": 4, "opened": 2}}) == "A"
    assert pick_winner(TEST, {}) == "A"
    clicks = AbTest(TEST.variants, "click", 60)
    assert pick_winner(clicks, {"A": {"sent": 4, "opened": 4, "clicked": 0},
                                "B": {"sent": 4, "opened": 0, "clicked": 1}}) == "B"
    assert results(TEST, {"B": {"sent": 4, "opened": 1}})[1].rate == 0.25


def test_the_winner_is_due_after_decide_after() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    running = AbTest(TEST.variants, "open", 60, test_started_at=start)
    assert not TEST.is_due(start + timedelta(days=1))
    assert not running.is_due(start + timedelta(seconds=59))
    assert running.is_due(start + timedelta(seconds=60))
    decided = AbTest(TEST.variants, "open", 60, test_started_at=start, winner="B")
    assert not decided.is_due(start + timedelta(days=1))


def test_the_remainder_gets_the_winner_once_known() -> None:
    assert message_of(TEST, REMAINDER) is None
    decided = AbTest(TEST.variants, "open", 60, winner="B")
    winner = message_of(decided, REMAINDER)
    assert winner is not None
    assert winner.template_id == "t2"
    assert AbTest.from_doc(decided.as_doc()) == decided
