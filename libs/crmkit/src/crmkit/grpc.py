"""gRPC: aio servers with the standard health service and authentication, and clients with
deadlines, retries for idempotent calls, and per-workspace service credentials."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from crmkit.auth import Authenticator, AuthError, Principal
from crmkit.kafka.retry import is_transient
from crmkit.telemetry import grpc_client_interceptors, grpc_server_interceptors

# Every call carries a deadline; this is the default for calls between services.
DEFAULT_DEADLINE = 5.0

Register = Callable[[grpc.aio.Server], None]


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer,
                 port: int, services: list[str]) -> None:
        self.server = server
        self.health = health_servicer
        self.port = port
        self.services = services

    async def stop(self, grace: float) -> None:
        for name in ["", *self.services]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)


class TransientToUnavailable(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server whose own dependency is down answers UNAVAILABLE, not UNKNOWN: the caller then
    retries and waits (its consumers treat UNAVAILABLE as transient) instead of giving up."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except Exception as exc:
                if is_transient(exc):
                    await context.abort(grpc.StatusCode.UNAVAILABLE,
                                        f"a dependency is unavailable ({type(exc).__name__}); retry")
                raise

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def uuid_or_abort(context: grpc.aio.ServicerContext, value: str, field: str) -> UUID:
    """``value`` as a UUID; otherwise the call ends with INVALID_ARGUMENT naming ``field``."""
    try:
        return UUID(value)
    except ValueError:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field} is not a UUID")
        raise


async def start_server(host: str, port: int, services: dict[str, Register]) -> GrpcServer:
    """Serve the given servicers (by full service name) and grpc.health.v1.Health."""
    server = grpc.aio.server(interceptors=[*grpc_server_interceptors(), TransientToUnavailable()])
    for register in services.values():
        register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    for name in ["", *services]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, health_servicer, bound, list(services))


class GrpcAuth:
    """Servicers call ``await auth.principal(context, scope)`` first thing."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def principal(self, context: grpc.aio.ServicerContext, scope: str) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        try:
            # In a thread: a JWKS refresh is a blocking HTTP request.
            principal = await asyncio.to_thread(
                self.authenticator.from_headers,
                _text(metadata.get("authorization")), _text(metadata.get("x-api-key")),
            )
        except AuthError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise AssertionError("unreachable") from exc
        if not (principal.allows(scope) or principal.allows("internal")):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"missing scope {scope}")
        return principal


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def retry_service_config(idempotent_services: Iterable[str]) -> str:
    """Transparent retries with backoff for the named (idempotent) services' methods."""
    names = [{"service": s} for s in idempotent_services]
    return json.dumps({
        "methodConfig": [{
            "name": names,
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
            },
        }]
    })


def create_channel(target: str, idempotent_services: Iterable[str] = (),
                   max_receive_bytes: int | None = None) -> grpc.aio.Channel:
    """A channel to ``target``; answers larger than ``max_receive_bytes`` (gRPC's default: 4 MiB)
    fail with ``RESOURCE_EXHAUSTED``."""
    options: list[tuple[str, str | int]] = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(idempotent_services)),
        ("grpc.keepalive_time_ms", 30000),
    ]
    if max_receive_bytes is not None:
        options.append(("grpc.max_receive_message_length", max_receive_bytes))
    return grpc.aio.insecure_channel(target, options=options, interceptors=grpc_client_interceptors())


class ServiceCredentials:
    """Short-lived tokens a service presents when it calls another on a workspace's behalf."""

    def __init__(self, authenticator: Authenticator, service: str, ttl_seconds: int = 300) -> None:
        self.authenticator = authenticator
        self.service = service
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, str]] = {}

    def metadata(self, workspace_id: str) -> tuple[tuple[str, str], ...]:
        now = time.monotonic()
        cached = self._cache.get(workspace_id)
        if cached is None or cached[0] < now:
            token = self.authenticator.service_token(self.service, workspace_id, self.ttl)
            cached = (now + self.ttl / 2, token)
            self._cache[workspace_id] = cached
        return (("authorization", f"Bearer {cached[1]}"),)
