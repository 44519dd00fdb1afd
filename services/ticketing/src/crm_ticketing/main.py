"""The ticketing process: HTTP API, gRPC server, outbox relay and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from crm.common.v1 import personal_data_pb2_grpc
from crm.ticketing.v1 import ticketing_pb2_grpc
from crm_ticketing.api.articles import public_router
from crm_ticketing.api.articles import router as kb_router
from crm_ticketing.api.errors import install_errors
from crm_ticketing.api.routes import router
from crm_ticketing.consumers.contacts import contacts_handlers
from crm_ticketing.consumers.interactions import interactions_handlers
from crm_ticketing.grpc.servicer import TicketingServicer
from crm_ticketing.service import KnowledgeBase, TicketingService
from crm_ticketing.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer
from crmkit.ratelimit import RateLimiter
from crmkit.topics import CONTACTS, INTERACTIONS

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.postgres(MIGRATIONS)
            service = TicketingService(db)
            await runtime.outbox_relay(db)
            auth = GrpcAuth(runtime.authenticator)
            servicer = TicketingServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.ticketing.v1.TicketingService":
                    partial(ticketing_pb2_grpc.add_TicketingServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer({INTERACTIONS: interactions_handlers(service),
                                    CONTACTS: contacts_handlers(service)})
            app.state.service = service
            app.state.knowledge_base = KnowledgeBase(db)
            app.state.kb_public_limiter = RateLimiter(settings.public_kb_rate_per_second,
                                                      settings.public_kb_burst)
            app.state.runtime = runtime
            yield

    app = create_service_app(settings, lifespan, [router, kb_router, public_router], title="CRM ticketing",
                             description="One inbox for every channel.")
    install_errors(app)
    return app
