"""Token-bucket rate limits for public endpoints (webhooks, chat): in-process, per key.

Each replica counts on its own, so a limit is per replica; that bounds what one caller can
make one process do, which is what these limits are for.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from crmkit.problems import Problem


class TooManyRequests(Problem):
    def __init__(self, retry_after: float, detail: str = "slow down") -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(429, "too-many-requests", "Too many requests", detail,
                         headers={"Retry-After": str(seconds)}, retry_after=seconds)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``rate`` requests a second per key, in bursts of up to ``burst``. The buckets of the
    ``max_keys`` most recently seen keys are kept; an older key starts again full."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock or time.monotonic
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def wait_time(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when there was one, else the seconds until there is
        (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def check(self, key: str, detail: str = "slow down") -> None:
        """Raise TooManyRequests (429 with Retry-After) when ``key`` is over its rate."""
        wait = self.wait_time(key)
        if wait > 0:
            raise TooManyRequests(wait, detail)
