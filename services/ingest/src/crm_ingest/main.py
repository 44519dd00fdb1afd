"""The ingest process: channel endpoints, the raw-topic worker, gRPC, and the outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import FastAPI

from crm.common.v1 import personal_data_pb2_grpc
from crm.ingest.v1 import ingest_pb2_grpc
from crm_ingest.adapters import EmailIn
from crm_ingest.api.chat import router as chat_router
from crm_ingest.api.chat_widget import ChatCors, widget_router
from crm_ingest.api.commerce import router as commerce_router
from crm_ingest.api.email_sources import router as email_sources_router
from crm_ingest.api.meta import instagram_router, messenger_router, whatsapp_router
from crm_ingest.api.routes import router
from crm_ingest.api.sms import router as sms_router
from crm_ingest.api.telegram import router as telegram_router
from crm_ingest.channel_routing import WebhookIntake
from crm_ingest.chat.hub import ChatHub
from crm_ingest.chat.service import ChatService
from crm_ingest.consumers.contacts import contacts_handlers
from crm_ingest.consumers.outbound import outbound_handlers
from crm_ingest.consumers.raw import raw_handlers
from crm_ingest.grpc.servicer import IngestServicer
from crm_ingest.outbound.chat import ChatDelivery
from crm_ingest.outbound.providers import provider_client
from crm_ingest.outbound.worker import OutboundService, deliveries_from
from crm_ingest.service import IngestService
from crm_ingest.settings import Settings
from crm_ingest.store.chat import ChatStore, erase_chat, prepare_chat
from crm_ingest.store.interactions import prepare
from crm_ingest.store.outbound import erase_outbound
from crmkit import Runtime, create_service_app
from crmkit.contacts import ContactsClient
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer
from crmkit.topics import CONTACTS, INGEST_RAW, OUTBOUND


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The providers' HTTP client outlives the runtime, so the consumer stops before it closes.
        # The email adapters stop first, while the producer and the database are still there.
        async with provider_client(settings.provider_timeout_seconds) as http, Runtime(settings) as runtime, \
                EmailIn(settings) as email_in:
            db = await runtime.mongo()
            await prepare(db)
            channel = await runtime.grpc_channel(settings.contacts_grpc_target,
                                                 [ContactsClient.SERVICE])
            contacts = ContactsClient(channel, runtime.credentials)
            service = IngestService(db, await runtime.producer(), contacts,
                                    max_attachment_bytes=settings.max_attachment_bytes,
                                    service_name=settings.service_name)
            await runtime.outbox_relay(db)
            runtime.background(service.confirmations.run(), "erasure confirmations")
            await prepare_chat(db)
            chat = ChatService(ChatStore(db), ChatHub(), service, settings.chat)
            deliveries = deliveries_from(settings, http)  # channel -> Delivery
            deliveries["chat"] = ChatDelivery(chat)
            outbound = OutboundService(db, deliveries, give_up_after=timedelta(
                seconds=settings.outbound_give_up_after_seconds))
            service.erasers.append(erase_outbound)
            service.erasers.append(erase_chat)
            auth = GrpcAuth(runtime.authenticator)
            servicer = IngestServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name, service.personal_data, auth)
            await runtime.serve_grpc({
                "crm.ingest.v1.IngestService":
                    partial(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer({INGEST_RAW: raw_handlers(service),
                                    CONTACTS: contacts_handlers(service),
                                    OUTBOUND: outbound_handlers(outbound)})
            await email_in.start(service, db)  # SMTP listener, IMAP pollers
            app.state.email_in = email_in
            app.state.service = service
            app.state.webhooks = WebhookIntake(service.producer)
            app.state.outbound = outbound
            app.state.runtime = runtime
            app.state.chat = chat
            async with chat.running():  # resends chat messages the broker missed
                yield

    app = create_service_app(settings, lifespan, [router, whatsapp_router, email_sources_router,
                                                  chat_router, widget_router, messenger_router,
                                                  instagram_router, telegram_router, sms_router,
                                                  commerce_router],
                             title="CRM ingest",
                             description="Channel adapters and the shared interaction stream.")
    app.add_middleware(ChatCors, config=settings.chat)
    return app
