"""Kafka for the services: CloudEvents envelope, producer, consumer runner, retry policy."""

from crmkit.kafka.consumer import BatchHandler, ConsumerRunner, Handler, record_span
from crmkit.kafka.envelope import Envelope, EnvelopeError, Event, make_event, partition_key
from crmkit.kafka.handlers import Delivered, Handlers, combine, consume
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
    "BatchHandler",
    "ConsumerRunner",
    "DeadLetter",
    "Delivered",
    "Envelope",
    "EnvelopeError",
    "Event",
    "Handler",
    "Handlers",
    "PermanentError",
    "Producer",
    "Retry",
    "RetryPolicy",
    "TransientError",
    "combine",
    "consume",
    "is_transient",
    "make_event",
    "partition_key",
    "record_span",
]
