"""Contacts' view of the other services' personal data over gRPC: every configured service is
asked for its part of a person's export at once, each under one deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from uuid import UUID

import grpc

from crm.common.v1 import personal_data_pb2, personal_data_pb2_grpc
from crm_contacts.service.personal_data import OK, SourcePart
from crmkit.grpc import ServiceCredentials

log = logging.getLogger(__name__)


class GrpcPersonalDataSources:
    def __init__(self, channels: Mapping[str, grpc.aio.Channel], credentials: ServiceCredentials,
                 deadline: float) -> None:
        self.stubs = {name: personal_data_pb2_grpc.PersonalDataServiceStub(channel)
                      for name, channel in sorted(channels.items())}
        self.credentials = credentials
        self.deadline = deadline

    async def gather(self, workspace_id: str, contact_ids: Sequence[UUID]) -> list[SourcePart]:
        """One part per service, in name order; a service that fails or does not answer within
        the deadline is ``unavailable`` with its gRPC status code."""
        if not self.stubs:
            return []
        request = personal_data_pb2.ExportPersonalDataRequest(contact_ids=[str(i) for i in contact_ids])
        metadata = self.credentials.metadata(workspace_id)
        return list(await asyncio.gather(*(self._ask(name, stub, request, metadata)
                                           for name, stub in self.stubs.items())))

    async def _ask(self, name: str, stub: personal_data_pb2_grpc.PersonalDataServiceStub,
                   request: personal_data_pb2.ExportPersonalDataRequest,
                   metadata: tuple[tuple[str, str], ...]) -> SourcePart:
        try:
            part = await stub.ExportPersonalData(request, timeout=self.deadline, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            # The archive names the status code only; the details (addresses, ...) go to the log.
            log.warning("a service gave no personal data",
                        extra={"service": name, "code": exc.code().name, "details": exc.details()})
            return SourcePart(name, f"unavailable: {exc.code().name}")
        except Exception as exc:  # never lose the whole export to one service
            log.exception("asking a service for its personal data failed", extra={"service": name})
            return SourcePart(name, f"unavailable: {type(exc).__name__}")
        return SourcePart(name, OK, bytes(part.json))
