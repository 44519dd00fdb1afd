"""The campaigns process: HTTP API, gRPC server and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from crm.campaigns.v1 import campaigns_pb2_grpc
from crm.common.v1 import personal_data_pb2_grpc
from crm_campaigns.api import ab as ab_api
from crm_campaigns.api import campaigns as campaigns_api
from crm_campaigns.api import journeys as journeys_api
from crm_campaigns.api import reports as reports_api
from crm_campaigns.api import templates as templates_api
from crm_campaigns.api import tracking as tracking_api
from crm_campaigns.api.errors import install_errors
from crm_campaigns.api.routes import router
from crm_campaigns.consumers.contacts import contacts_handlers
from crm_campaigns.consumers.conversions import alongside, order_handlers, pipeline_handlers
from crm_campaigns.consumers.deliveries import deliveries_handlers
from crm_campaigns.consumers.interactions import interactions_handlers
from crm_campaigns.consumers.journeys import (
    campaigns_journey_handlers,
    contacts_journey_handlers,
    orders_journey_handlers,
    pipeline_journey_handlers,
    tickets_journey_handlers,
    won_journey_handlers,
)
from crm_campaigns.grpc.servicer import CampaignsServicer
from crm_campaigns.service import CampaignsService
from crm_campaigns.service.audiences import ContactsAudiences
from crm_campaigns.service.campaigns import Campaigns
from crm_campaigns.service.journeys import JourneysConfig, JourneysService
from crm_campaigns.service.privacy import PrivacyService
from crm_campaigns.service.reports import ReportsService
from crm_campaigns.service.sender import Sender
from crm_campaigns.service.templates import Templates
from crm_campaigns.service.tracking import TrackingConfig, TrackingService
from crm_campaigns.settings import Settings
from crm_campaigns.store.campaigns import prepare as prepare_campaigns
from crm_campaigns.store.engagement import prepare
from crm_campaigns.store.journeys import prepare as prepare_journeys
from crm_campaigns.store.tracking import prepare_tracking
from crmkit import Runtime, create_service_app
from crmkit.contacts import ContactsClient
from crmkit.grpc import GrpcAuth
from crmkit.kafka import combine
from crmkit.personal_data import PersonalDataServicer
from crmkit.ratelimit import RateLimiter
from crmkit.topics import CAMPAIGNS, CONTACTS, INTERACTIONS, PIPELINE, TICKETS


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.mongo()
            await prepare(db)
            await prepare_tracking(db)
            tracking = TrackingService(db, TrackingConfig(settings.tracking_key, settings.bot_open_seconds,
                                                          settings.conversion_window_days))
            app.state.tracking = tracking
            app.state.tracking_limiter = RateLimiter(settings.tracking_rate_per_second,
                                                     settings.tracking_burst)
            app.state.campaign_reports = ReportsService(db, settings.conversion_window_days)
            service = CampaignsService(db)
            channel = await runtime.grpc_channel(settings.contacts_grpc_target, [ContactsClient.SERVICE])
            contacts = ContactsClient(channel, runtime.credentials)
            # Templates, campaigns and the sender (audiences streamed from contacts).
            await prepare_campaigns(db)
            audiences = ContactsAudiences(contacts)
            campaigns = Campaigns(db, audiences)
            app.state.templates = Templates(db, audiences, base_url=settings.public_base_url)
            app.state.campaigns = campaigns
            sender = Sender(db, audiences, await runtime.producer(), base_url=settings.public_base_url,
                            secret=settings.tracking_key, batch_size=settings.sender_batch_size,
                            poll_seconds=settings.sender_poll_seconds)
            runtime.background(sender.run(), "campaign sender")
            app.state.ab_tests = sender.ab  # A/B tests: the sender sends them (service/ab.py)
            # Erasures are confirmed to contacts by a background task (crmkit.erasure).
            privacy = PrivacyService(db, partial(contacts.confirm_erasure, service=settings.service_name))
            runtime.background(privacy.confirmations.run(), "erasure confirmations")
            await runtime.outbox_relay(db)  # tracking, unsubscribe and campaign events
            # Journeys: triggers start runs (consumers below), a runner advances the due ones.
            await prepare_journeys(db)
            journeys = JourneysService(db, JourneysConfig(settings.public_base_url, settings.tracking_key,
                                                          settings.journey_poll_seconds), contacts,
                                       contacts.update_contact_fields)
            app.state.journeys = journeys
            runtime.background(journeys.run_forever(), "journey runner")
            auth = GrpcAuth(runtime.authenticator)
            servicer = CampaignsServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.campaigns.v1.CampaignsService":
                    partial(campaigns_pb2_grpc.add_CampaignsServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            orders = order_handlers(tracking)
            await runtime.consumer({
                INTERACTIONS: combine(alongside(alongside(interactions_handlers(service), orders),
                                                orders_journey_handlers(journeys)),
                                      deliveries_handlers(campaigns)),
                PIPELINE: combine(alongside(pipeline_handlers(tracking), won_journey_handlers(journeys)),
                                  pipeline_journey_handlers(journeys)),
                CONTACTS: combine(contacts_handlers(service, privacy), contacts_journey_handlers(journeys)),
                TICKETS: tickets_journey_handlers(journeys),
                CAMPAIGNS: campaigns_journey_handlers(journeys)})
            app.state.service = service
            app.state.runtime = runtime
            yield

    app = create_service_app(settings, lifespan, [router, templates_api.router, campaigns_api.router,
                                                  tracking_api.router, reports_api.router,
                                                  journeys_api.router, ab_api.router],
                             title="CRM campaigns",
                             description="Audiences, email campaigns, journeys and tracking.")
    install_errors(app)
    return app
