"""A gRPC server whose own dependency is down tells its callers to retry."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crmkit.grpc import start_server
from crmkit.testing import free_port

SERVICE = "crm.test.v1.Probe"


def _register(failure: Exception):  # type: ignore[no-untyped-def]
    async def check(request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        raise failure

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Check": grpc.unary_unary_rpc_method_handler(
            check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
    })
    return lambda server: server.add_generic_rpc_handlers((handler,))


@pytest.mark.parametrize(
    ("failure", "status"),
    [(ConnectionRefusedError("postgres is down"), grpc.StatusCode.UNAVAILABLE),
     (ValueError("a bug"), grpc.StatusCode.UNKNOWN)],
    ids=["dependency-down", "bug"],
)
async def test_a_dependency_outage_answers_unavailable_and_a_bug_does_not(
    failure: Exception, status: grpc.StatusCode
) -> None:
    server = await start_server("127.0.0.1", free_port(), {SERVICE: _register(failure)})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary(f"/{SERVICE}/Check",
                                       request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                       response_deserializer=health_pb2.HealthCheckResponse.FromString)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call(health_pb2.HealthCheckRequest(), timeout=5)
            assert error.value.code() == status
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
