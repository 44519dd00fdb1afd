"""OpenTelemetry: traces and metrics for one service process, with the library instrumentations.

Metrics are served for Prometheus at /metrics, and exported by OTLP when configured.
FastAPI, gRPC (client and server interceptors), asyncpg and PyMongo use their
instrumentation packages. Kafka is propagated by crmkit.kafka itself: the trace context is
captured when an event is written to the outbox and carried in the record's headers, which
the aiokafka instrumentation cannot do (it would start the trace at the relay instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_state: dict[str, Any] = {}


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    service: str,
    exporter: str = "none",
    extra_processors: Sequence[SpanProcessor] = (),
) -> Telemetry:
    """Install the providers and instrumentations once per process."""
    if "telemetry" in _state:
        existing = _state["telemetry"]
        assert isinstance(existing, Telemetry)
        return existing
    resource = Resource.create({"service.name": service, "service.namespace": "crm"})
    tracer_provider = TracerProvider(resource=resource)
    # Always scrapeable by Prometheus at /metrics; OTLP or console in addition when chosen.
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [PrometheusMetricReader()]
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    elif exporter == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    for processor in extra_processors:
        tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    PymongoInstrumentor().instrument()
    telemetry = Telemetry(tracer_provider, meter_provider)
    _state["telemetry"] = telemetry
    return telemetry


def grpc_server_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def grpc_client_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]


def current_trace_headers() -> dict[str, str]:
    """The W3C trace context of the current span (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(dict(headers))
