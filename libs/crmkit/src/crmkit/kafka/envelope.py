"""CloudEvents 1.0 over Kafka, binary mode: attributes in ``ce_*`` headers, protobuf value."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import Message

from crmkit.ids import uuid7
from crmkit.telemetry import current_trace_headers

CONTENT_TYPE = "application/protobuf"
_REQUIRED = ("ce_specversion", "ce_id", "ce_type", "ce_source", "workspace")
_TRACE_HEADERS = ("traceparent", "tracestate")


class EnvelopeError(ValueError):
    """A record that is not a valid CloudEvent of ours: it can never succeed, so it is dead-lettered."""


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    workspace: str
    subject: str
    time: datetime
    data: bytes
    dataschema: str = ""
    trace: dict[str, str] = field(default_factory=dict)
    # Internal topics carry protobuf; the public topics partners read carry JSON.
    content_type: str = CONTENT_TYPE

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("ce_subject", self.subject.encode()),
            ("content-type", self.content_type.encode()),
            ("workspace", self.workspace.encode()),
        ]
        if self.dataschema:
            headers.append(("ce_dataschema", self.dataschema.encode()))
        headers.extend((k, v.encode()) for k, v in self.trace.items() if k in _TRACE_HEADERS)
        return headers

    @classmethod
    def from_record(cls, headers: Sequence[tuple[str, bytes]], value: bytes | None) -> Envelope:
        try:
            attrs = {k: v.decode() for k, v in headers}
        except UnicodeDecodeError as exc:
            raise EnvelopeError("a header is not UTF-8") from exc
        missing = [name for name in _REQUIRED if not attrs.get(name)]
        if missing:
            raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
        if attrs["ce_specversion"] != "1.0":
            raise EnvelopeError(f"unsupported specversion {attrs['ce_specversion']!r}")
        try:
            time = datetime.fromisoformat(attrs["ce_time"]) if attrs.get("ce_time") else None
        except ValueError as exc:
            raise EnvelopeError("ce_time is not RFC 3339") from exc
        return cls(
            id=attrs["ce_id"],
            type=attrs["ce_type"],
            source=attrs["ce_source"],
            workspace=attrs["workspace"],
            subject=attrs.get("ce_subject", ""),
            time=time or datetime.now(UTC),
            data=value or b"",
            dataschema=attrs.get("ce_dataschema", ""),
            trace={k: attrs[k] for k in _TRACE_HEADERS if k in attrs},
            content_type=attrs.get("content-type") or CONTENT_TYPE,
        )

    def parse(self, message_type: builtins.type[Message]) -> Message:
        message = message_type()
        try:
            message.ParseFromString(self.data)
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise EnvelopeError(f"value is not a {message_type.DESCRIPTOR.full_name}") from exc
        return message


@dataclass(frozen=True)
class Event:
    """An event ready to be written to an outbox or sent: where it goes, and what it is."""

    topic: str
    key: str
    envelope: Envelope


def make_event(
    *,
    topic: str,
    type: str,
    source: str,
    workspace: str,
    subject: str,
    payload: Message,
    event_id: str | None = None,
    key: str | None = None,
    trace: Mapping[str, str] | None = None,
) -> Event:
    """Build an event now, capturing the current trace context so the trace goes on after it
    (or ``trace``, the context of the event that caused this one, for work done in batches).
    The key defaults to the workspace and the subject (the aggregate)."""
    envelope = Envelope(
        id=event_id or str(uuid7()),
        type=type,
        source=source,
        workspace=workspace,
        subject=subject,
        time=datetime.now(UTC),
        data=payload.SerializeToString(),
        dataschema=payload.DESCRIPTOR.full_name,
        trace=dict(trace) if trace is not None else current_trace_headers(),
    )
    return Event(topic=topic, key=key or partition_key(workspace, subject), envelope=envelope)


def partition_key(workspace: str, aggregate_id: str) -> str:
    """One aggregate's events share a key, so they stay in order on one partition."""
    return f"{workspace}:{aggregate_id}"
