"""The ingest process: channel endpoints, the raw-topic worker, gRPC, and the outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from crm.common.v1 import personal_data_pb2_grpc
from crm.ingest.v1 import ingest_pb2_grpc
from crm_ingest.api.routes import router
from crm_ingest.api.whatsapp import router as whatsapp_router
from crm_ingest.consumers.raw import raw_handlers
from crm_ingest.contacts_client import ContactsClient
from crm_ingest.grpc.servicer import IngestServicer
from crm_ingest.service import IngestService
from crm_ingest.settings import Settings
from crm_ingest.store.interactions import prepare
from crmkit import Runtime, create_service_app
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer
from crmkit.topics import INGEST_RAW


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.mongo()
            await prepare(db)
            channel = await runtime.grpc_channel(settings.contacts_grpc_target,
                                                 [ContactsClient.SERVICE])
            contacts = ContactsClient(channel, runtime.credentials)
            whatsapp = settings.whatsapp
            service = IngestService(db, await runtime.producer(), contacts,
                                    whatsapp.workspaces if whatsapp else None)
            await runtime.outbox_relay(db)
            auth = GrpcAuth(runtime.authenticator)
            servicer = IngestServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.ingest.v1.IngestService":
                    partial(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer({INGEST_RAW: raw_handlers(service)})
            app.state.service = service
            app.state.runtime = runtime
            yield

    return create_service_app(settings, lifespan, [router, whatsapp_router], title="CRM ingest",
                              description="Channel adapters and the shared interaction stream.")
