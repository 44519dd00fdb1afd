"""The campaigns process: HTTP API, gRPC server and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from crm.campaigns.v1 import campaigns_pb2_grpc
from crm.common.v1 import personal_data_pb2_grpc
from crm_campaigns.api.routes import router
from crm_campaigns.consumers.contacts import contacts_handlers
from crm_campaigns.consumers.interactions import interactions_handlers
from crm_campaigns.grpc.servicer import CampaignsServicer
from crm_campaigns.service import CampaignsService
from crm_campaigns.settings import Settings
from crm_campaigns.store.engagement import prepare
from crmkit import Runtime, create_service_app
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer
from crmkit.topics import CONTACTS, INTERACTIONS


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.mongo()
            await prepare(db)
            service = CampaignsService(db)
            # Campaigns publishes no events yet, so it runs no outbox relay.
            auth = GrpcAuth(runtime.authenticator)
            servicer = CampaignsServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.campaigns.v1.CampaignsService":
                    partial(campaigns_pb2_grpc.add_CampaignsServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer({INTERACTIONS: interactions_handlers(service),
                                    CONTACTS: contacts_handlers(service)})
            app.state.service = service
            app.state.runtime = runtime
            yield

    return create_service_app(settings, lifespan, [router], title="CRM campaigns",
                              description="Audiences, email campaigns, journeys and tracking.")
