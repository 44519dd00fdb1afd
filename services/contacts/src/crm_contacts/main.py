"""The contacts process: HTTP API, gRPC server, outbox relay and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from crm.contacts.v1 import contacts_pb2_grpc
from crm_contacts.api import companies, duplicates, imports, privacy, routes, segments
from crm_contacts.api.errors import install_domain_errors
from crm_contacts.consumers.campaigns import campaigns_handlers
from crm_contacts.consumers.interactions import interactions_handlers
from crm_contacts.consumers.tickets import tickets_handlers
from crm_contacts.grpc.servicer import ContactsServicer
from crm_contacts.personal_data_sources import GrpcPersonalDataSources
from crm_contacts.service import ContactsService
from crm_contacts.service.companies import CompaniesService
from crm_contacts.service.duplicates import DuplicatesService
from crm_contacts.service.exports import ExportsService
from crm_contacts.service.imports import ImportsService, import_worker
from crm_contacts.service.merges import MergesService
from crm_contacts.service.privacy import PrivacyService
from crm_contacts.service.segments import SegmentsService
from crm_contacts.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import MAX_PART_BYTES
from crmkit.personal_data import SERVICE as PERSONAL_DATA_SERVICE
from crmkit.topics import CAMPAIGNS, INTERACTIONS, TICKETS

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.postgres(MIGRATIONS)
            service = ContactsService(db, settings.phone_region)
            sources = GrpcPersonalDataSources(
                {name: await runtime.grpc_channel(target, [PERSONAL_DATA_SERVICE],
                                                  max_receive_bytes=MAX_PART_BYTES + 1024 * 1024)
                 for name, target in settings.personal_data_sources.items()},
                runtime.credentials, settings.personal_data_deadline_seconds)
            privacy_service = PrivacyService(db, settings.erasure_services, sources)
            await runtime.outbox_relay(db)
            servicer = ContactsServicer(service, privacy_service, GrpcAuth(runtime.authenticator))
            await runtime.serve_grpc({
                "crm.contacts.v1.ContactsService":
                    partial(contacts_pb2_grpc.add_ContactsServiceServicer_to_server, servicer),
            })
            await runtime.consumer({
                INTERACTIONS: interactions_handlers(service),
                TICKETS: tickets_handlers(service),
                CAMPAIGNS: campaigns_handlers(privacy_service),
            })
            app.state.service = service
            app.state.duplicates = DuplicatesService(db)
            app.state.segments = SegmentsService(db)
            app.state.companies = CompaniesService(db)
            app.state.merges = MergesService(db)
            app.state.privacy = privacy_service
            app.state.runtime = runtime
            app.state.imports = ImportsService(db, max_bytes=settings.import_max_bytes,
                                               batch_size=settings.import_batch_size,
                                               phone_region=settings.phone_region)
            app.state.exports = ExportsService(db)
            async with import_worker(app.state.imports, settings.import_poll_seconds,
                                     settings.shutdown_grace_seconds), app.state.duplicates:
                yield

    # imports.router first: its /v1/contacts/export is not a /v1/contacts/{contact_id}.
    routers = [imports.router, routes.router, companies.router, privacy.router, segments.router,
               duplicates.router]
    app = create_service_app(settings, lifespan, routers, title="CRM contacts",
                             description="People, companies, identities, segments and the 360 view.")
    install_domain_errors(app)
    return app
