from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from crm.common.v1 import common_pb2
from crmkit.kafka import Envelope, EnvelopeError, make_event, partition_key


def test_an_event_round_trips_through_cloudevents_binary_headers() -> None:
    event = make_event(topic="crm.t.v1", type="crm.t.thing.happened.v1", source="/crm/test",
                       workspace="ws1", subject="agg-1",
                       payload=common_pb2.Money(amount_minor=1250, currency="EUR"))
    names = [k for k, _ in event.envelope.headers()]
    assert {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "workspace",
            "content-type"} <= set(names)
    back = Envelope.from_record(event.envelope.headers(), event.envelope.data)
    assert back.id == event.envelope.id
    assert back.type == "crm.t.thing.happened.v1"
    assert back.workspace == "ws1"
    assert back.subject == "agg-1"
    assert back.time.tzinfo is not None
    money = back.parse(common_pb2.Money)
    assert isinstance(money, common_pb2.Money)
    assert (money.amount_minor, money.currency) == (1250, "EUR")


def test_one_aggregates_events_share_a_partition_key() -> None:
    assert partition_key("ws1", "c1") == "ws1:c1"
    first = make_event(topic="t", type="x", source="/s", workspace="ws1", subject="c1",
                       payload=common_pb2.PageInfo())
    second = make_event(topic="t", type="y", source="/s", workspace="ws1", subject="c1",
                        payload=common_pb2.PageInfo())
    assert first.key == second.key
    assert first.envelope.id != second.envelope.id


def test_the_current_trace_context_travels_in_the_headers() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer") as span:
        event = make_event(topic="t", type="x", source="/s", workspace="w", subject="s",
                           payload=common_pb2.PageInfo())
    headers = dict(event.envelope.headers())
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace_id in headers["traceparent"].decode()
    assert trace.get_current_span().get_span_context().is_valid is False


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "missing CloudEvents headers"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s")],
         "workspace"),
        ([("ce_specversion", b"0.3"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"),
          ("workspace", b"w")], "specversion"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"\xff"), ("ce_type", b"t"), ("ce_source", b"/s"),
          ("workspace", b"w")], "UTF-8"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"),
          ("workspace", b"w"), ("ce_time", b"yesterday")], "RFC 3339"),
    ],
)
def test_records_that_are_not_our_cloudevents_are_rejected_with_a_reason(
    headers: list[tuple[str, bytes]], reason: str
) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        Envelope.from_record(headers, b"")


def test_a_value_that_is_not_the_expected_message_is_an_envelope_error() -> None:
    envelope = Envelope(id="1", type="t", source="/s", workspace="w", subject="", time=datetime.now(UTC),
                        data=b"\xff\xff\xff")
    with pytest.raises(EnvelopeError, match=r"crm\.common\.v1\.Money"):
        envelope.parse(common_pb2.Money)
