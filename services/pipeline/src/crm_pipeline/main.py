"""The pipeline process: HTTP API, gRPC server and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from crm.common.v1 import personal_data_pb2_grpc
from crm.pipeline.v1 import pipeline_pb2_grpc
from crm_pipeline.api.routes import router
from crm_pipeline.consumers.contacts import contacts_handlers
from crm_pipeline.consumers.interactions import interactions_handlers
from crm_pipeline.grpc.servicer import PipelineServicer
from crm_pipeline.service import PipelineService
from crm_pipeline.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer
from crmkit.topics import CONTACTS, INTERACTIONS

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.postgres(MIGRATIONS)
            service = PipelineService(db)
            # Pipeline publishes no events yet, so it runs no outbox relay.
            auth = GrpcAuth(runtime.authenticator)
            servicer = PipelineServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.pipeline.v1.PipelineService":
                    partial(pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer({INTERACTIONS: interactions_handlers(service),
                                    CONTACTS: contacts_handlers(service)})
            app.state.service = service
            app.state.runtime = runtime
            yield

    return create_service_app(settings, lifespan, [router], title="CRM pipeline",
                              description="Pipelines, deals, activities and forecasts.")
