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
from crm_ticketing.api.assignment import router as assignment_router
from crm_ticketing.api.csat import public_router as csat_public_router
from crm_ticketing.api.csat import router as csat_router
from crm_ticketing.api.custom_fields import router as fields_router
from crm_ticketing.api.errors import install_errors
from crm_ticketing.api.links import router as links_router
from crm_ticketing.api.macros import router as macros_router
from crm_ticketing.api.messages import router as messages_router
from crm_ticketing.api.reports import router as reports_router
from crm_ticketing.api.routes import router
from crm_ticketing.api.sla import router as sla_router
from crm_ticketing.api.views import router as views_router
from crm_ticketing.consumers.contacts import contacts_handlers
from crm_ticketing.consumers.interactions import interactions_handlers
from crm_ticketing.grpc.servicer import TicketingServicer
from crm_ticketing.service import CsatSurveys, KnowledgeBase, Reports, TicketingService, ViewsService
from crm_ticketing.service.assignment import Assignment
from crm_ticketing.service.conversation import Conversation
from crm_ticketing.service.custom_fields import TicketFields
from crm_ticketing.service.links import TicketRelations
from crm_ticketing.service.macros import Macros
from crm_ticketing.service.privacy import Erasure
from crm_ticketing.service.sla import SlaAdmin, SlaClocks, SlaScheduler
from crm_ticketing.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.contacts import ContactsClient
from crmkit.erasure import ErasureConfirmations
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
            # SLA clocks run after any hook that changes the ticket (assignment).
            sla_scheduler = SlaScheduler(db)
            sla_clocks = SlaClocks(on_alert_due=sla_scheduler.wake)
            # CSAT runs last: it credits the assignee another hook may have just set.
            csat = CsatSurveys(db, settings.csat_signing_key, settings.public_base_url)
            channel = await runtime.grpc_channel(settings.contacts_grpc_target, [ContactsClient.SERVICE])
            contacts = ContactsClient(channel, runtime.credentials)
            # Assignment runs first, so that the hooks after it that read the ticket find its
            # team and assignee.
            assignment = Assignment(db, contacts)
            service = TicketingService(db, hooks=[assignment, sla_clocks, csat])
            await runtime.outbox_relay(db)
            runtime.background(sla_scheduler.run(), "sla scheduler")
            auth = GrpcAuth(runtime.authenticator)
            servicer = TicketingServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.ticketing.v1.TicketingService":
                    partial(ticketing_pb2_grpc.add_TicketingServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            confirmations = ErasureConfirmations(
                db, partial(contacts.confirm_erasure, service=settings.service_name))
            runtime.background(confirmations.run(), "erasure confirmations")
            erasure = Erasure(db, confirmations, erasers=[csat.erase])
            conversation = Conversation(db, service)
            await runtime.consumer({INTERACTIONS: interactions_handlers(service, conversation),
                                    CONTACTS: contacts_handlers(service, erasure)})
            app.state.service = service
            app.state.contacts = contacts
            app.state.assignment = assignment
            app.state.knowledge_base = KnowledgeBase(db)
            app.state.conversation = conversation
            app.state.macros = Macros(db, conversation, contacts)
            app.state.relations = TicketRelations(db)
            app.state.ticket_fields = TicketFields(db)
            app.state.kb_public_limiter = RateLimiter(settings.public_kb_rate_per_second,
                                                      settings.public_kb_burst)
            app.state.sla = SlaAdmin(db, sla_clocks)
            app.state.sla_scheduler = sla_scheduler
            app.state.csat = csat
            app.state.views = ViewsService(db)
            app.state.reports = Reports(db)
            app.state.csat_public_limiter = RateLimiter(settings.public_csat_rate_per_second,
                                                        settings.public_csat_burst)
            app.state.runtime = runtime
            yield

    routers = [router, messages_router, macros_router, links_router, fields_router, assignment_router,
               sla_router, views_router, reports_router, csat_router, kb_router, public_router,
               csat_public_router]
    app = create_service_app(settings, lifespan, routers,
                             title="CRM ticketing", description="One inbox for every channel.")
    install_errors(app)
    return app
