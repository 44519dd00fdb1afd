"""Retries back off exponentially with jitter, capped, and end with the retry window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_partners.domain.backoff import Backoff

START = datetime(2026, 1, 1, tzinfo=UTC)
BACKOFF = Backoff(base=timedelta(seconds=5), cap=timedelta(hours=1), window=timedelta(hours=72))


def test_the_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    ceilings = [BACKOFF.delay(n, 0.999999) for n in (1, 2, 3, 4)]
    assert [round(c.total_seconds()) for c in ceilings] == [5, 10, 20, 40]
    assert BACKOFF.delay(40, 0.999999) <= timedelta(hours=1)
    assert BACKOFF.delay(40, 0.999999) > timedelta(minutes=59)


def test_the_draw_spreads_the_wait_between_a_floor_and_the_ceiling() -> None:
    assert BACKOFF.delay(3, 0.0) == timedelta(seconds=1)
    assert BACKOFF.delay(3, 0.5) == timedelta(seconds=10.5)


def test_a_failure_inside_the_window_is_retried_and_the_last_retry_is_at_its_end() -> None:
    now = START + timedelta(hours=1)
    assert BACKOFF.next_attempt(1, START, now, 0.5) == now + BACKOFF.delay(1, 0.5)
    near_end = START + timedelta(hours=72) - timedelta(minutes=5)
    assert BACKOFF.next_attempt(30, START, near_end, 0.9) == START + timedelta(hours=72)


def test_a_failure_at_or_after_the_end_of_the_window_is_dead() -> None:
    assert BACKOFF.next_attempt(80, START, START + timedelta(hours=72), 0.5) is None
    assert BACKOFF.next_attempt(80, START, START + timedelta(hours=73), 0.5) is None


def test_an_absurd_attempt_count_does_not_overflow() -> None:
    assert BACKOFF.delay(10_000, 0.5) <= timedelta(hours=1)
