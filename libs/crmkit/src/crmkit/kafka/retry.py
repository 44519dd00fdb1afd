"""What a consumer does with a record whose handling failed: pure, so it is unit-tested alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from crmkit.kafka.envelope import EnvelopeError


class PermanentError(Exception):
    """Handling can never succeed (bad input): dead-letter at once."""


class TransientError(Exception):
    """A dependency is down: wait and retry, however long it takes; never drop the record."""


@dataclass(frozen=True)
class Retry:
    delay: float


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    # Attempts for an unexpected error before the record goes to the DLQ.
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))

    def decide(self, attempt: int, error: BaseException) -> Retry | DeadLetter:
        """``attempt`` is the number of attempts made so far (1 after the first failure)."""
        if isinstance(error, (PermanentError, EnvelopeError)):
            return DeadLetter(_describe(error))
        if is_transient(error):
            return Retry(self.backoff(attempt))
        if attempt >= self.max_attempts:
            return DeadLetter(f"gave up after {attempt} attempts: {_describe(error)}")
        return Retry(self.backoff(attempt))


def dead_letter_headers(headers: Iterable[tuple[str, bytes]], reason: str, topic: str,
                        **where: object) -> list[tuple[str, bytes]]:
    """A dead letter's headers: the original ones (earlier ``dlq_*`` ones removed), then why
    (``dlq_reason``), the topic it came from or was meant for (``dlq_topic``), ``dlq_<name>``
    for each of ``where``, and when (``dlq_failed_at``)."""
    kept = [(k, v) for k, v in headers if not k.startswith("dlq_")]
    return [
        *kept,
        ("dlq_reason", reason.encode()),
        ("dlq_topic", topic.encode()),
        *((f"dlq_{name}", str(value).encode()) for name, value in where.items()),
        ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
    ]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def is_transient(error: BaseException) -> bool:
    """Errors that mean 'a server is unreachable right now', from every client we use."""
    if isinstance(error, (TransientError, ConnectionError, TimeoutError)):
        return True
    import grpc
    from pymongo.errors import AutoReconnect, PyMongoError, ServerSelectionTimeoutError

    if isinstance(error, (AutoReconnect, ServerSelectionTimeoutError)):
        return True
    if isinstance(error, PyMongoError) and error.has_error_label("TransientTransactionError"):
        return True  # a write conflict between transactions: trying again is the cure
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    import asyncpg

    return isinstance(
        error,
        (
            asyncpg.exceptions.PostgresConnectionError,  # class 08: the connection is gone
            asyncpg.exceptions.InterfaceError,  # the pool's connection was closed under us
            asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, failover
            asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization, deadlock
            asyncpg.exceptions.TooManyConnectionsError,
        ),
    )
