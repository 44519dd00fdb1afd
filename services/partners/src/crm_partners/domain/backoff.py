"""When a failed webhook delivery is tried again, and when it is given up (dead).

Exponential backoff with full jitter (the delay is uniform between a small floor and
``base * 2**(attempt - 1)``, capped): receivers that failed together are not hit again in
step. A delivery is retried until ``window`` has passed since its retry window began (its
creation, or a manual retry of it); the last retry is moved up to the window's end, and a
failure at or after the end makes the delivery dead (the subscription's DLQ).

Pure: the random draw is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Backoff:
    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(hours=72)

    def delay(self, attempts: int, draw: float) -> timedelta:
        """The wait after the ``attempts``-th failed attempt; ``draw`` is uniform in [0, 1)."""
        ceiling: timedelta = min(self.cap, self.base * 2 ** min(max(attempts - 1, 0), 32))
        floor = min(self.base / 5, ceiling)
        return floor + (ceiling - floor) * draw

    def next_attempt(self, attempts: int, window_start: datetime, now: datetime,
                     draw: float) -> datetime | None:
        """When to try again after a failure, or None when the delivery is dead."""
        deadline = window_start + self.window
        if now >= deadline:
            return None
        return min(now + self.delay(attempts, draw), deadline)
