"""Kafka for the services: CloudEvents envelope, producer, consumer runner, retry policy."""

from crmkit.kafka.consumer import ConsumerRunner, Handler
from crmkit.kafka.envelope import Envelope, EnvelopeError, Event, make_event, partition_key
from crmkit.kafka.handlers import on_event
from crmkit.kafka.producer import Producer
from crmkit.kafka.retry import (
    DeadLetter,
    PermanentError,
    Retry,
    RetryPolicy,
    TransientError,
    is_transient,
)

__all__ = [
    "ConsumerRunner",
    "DeadLetter",
    "Envelope",
    "EnvelopeError",
    "Event",
    "Handler",
    "PermanentError",
    "Producer",
    "Retry",
    "RetryPolicy",
    "TransientError",
    "is_transient",
    "make_event",
    "on_event",
    "partition_key",
]
