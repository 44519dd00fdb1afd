"""A minimal OTLP/HTTP receiver for benchmarks: a service started with ``SpanSink.env()``
exports its spans (protobuf) to a loopback port of the benchmark, which keeps them, so that
where a piece of work spends its time can be read from the service's own spans."""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


@dataclass(frozen=True)
class Span:
    name: str
    scope: str  # the instrumentation that made it ("opentelemetry.instrumentation.pymongo", ...)
    span_id: bytes
    parent_id: bytes  # b"" for a root span
    start_ns: int
    end_ns: int
    attributes: dict[str, object]

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


class SpanSink:
    """Listens on 127.0.0.1 from creation until ``close()``; answers every export with 200."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.received_at = time.perf_counter()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.endswith("/v1/traces"):
                    sink._receive(body)
                    answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                else:  # metrics and logs are not kept
                    answer = b""
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="span sink", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What a service needs to export its spans here, promptly and without dropping any."""
        return {
            "CRM_OTEL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2000",
            "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
        }

    def _receive(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        spans = [
            Span(span.name, scope_spans.scope.name, span.span_id, span.parent_span_id,
                 span.start_time_unix_nano, span.end_time_unix_nano,
                 {kv.key: _value(kv.value) for kv in span.attributes})
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.spans.extend(spans)
            self.received_at = time.perf_counter()

    def quiet_for(self) -> float:
        """Seconds since the last export arrived."""
        with self._lock:
            return time.perf_counter() - self.received_at

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind in _SCALARS else None


_SCALARS = ("string_value", "int_value", "double_value", "bool_value")
