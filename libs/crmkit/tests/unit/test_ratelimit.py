import pytest

from crmkit.ratelimit import RateLimiter, TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_rate_and_each_key_counts_alone() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.wait_time("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_time("a") == pytest.approx(0.5)  # one token comes every half second
    assert limiter.wait_time("b") == 0.0
    clock.now += 0.5
    assert limiter.wait_time("a") == 0.0
    assert limiter.wait_time("a") > 0


def test_over_the_rate_is_a_429_with_retry_after_in_whole_seconds() -> None:
    limiter = RateLimiter(rate=0.1, burst=1, clock=Clock())
    limiter.check("k")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("k", "too many from this address")
    problem = refused.value
    assert (problem.status, problem.headers) == (429, {"Retry-After": "10"})
    assert problem.body()["detail"] == "too many from this address"


def test_only_the_most_recent_keys_are_kept() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2, clock=clock)
    for key in ("a", "b", "c"):
        limiter.wait_time(key)
    assert limiter.wait_time("a") == 0.0  # forgotten, so full again
    assert limiter.wait_time("c") > 0


def test_a_limiter_needs_a_positive_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, burst=1)
