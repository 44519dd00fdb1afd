"""The partners process: HTTP API, the projection consumer, webhook delivery and gRPC export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from crm.common.v1 import personal_data_pb2_grpc
from crm_partners.api import catalogue, events, partners, webhooks, workspace
from crm_partners.service.accounts import Accounts
from crm_partners.service.deliveries import Deliveries
from crm_partners.service.projection import Projection
from crm_partners.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.contacts import ContactsClient
from crmkit.erasure import ErasureConfirmations
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.postgres(MIGRATIONS)
            await runtime.outbox_relay(db)
            channel = await runtime.grpc_channel(settings.contacts_grpc_target, [ContactsClient.SERVICE])
            contacts = ContactsClient(channel, runtime.credentials)
            confirmations = ErasureConfirmations(
                db, partial(contacts.confirm_erasure, service=settings.service_name))
            runtime.background(confirmations.run(), "erasure confirmations")
            accounts = Accounts(db, settings)
            deliveries = Deliveries(db, settings)
            runtime.background(deliveries.run(), "webhook deliveries")
            projection = Projection(db, deliveries, confirmations, settings)
            runtime.background(projection.run_retention(), "replay store retention")
            exporter = PersonalDataServicer(settings.service_name, projection.personal_data,
                                            GrpcAuth(runtime.authenticator))
            await runtime.serve_grpc({
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer(projection.handlers())
            app.state.db = db
            app.state.accounts = accounts
            app.state.deliveries = deliveries
            app.state.projection = projection
            app.state.runtime = runtime
            yield

    return create_service_app(
        settings, lifespan,
        [workspace.router, partners.router, webhooks.router, events.router, catalogue.router],
        title="CRM partners",
        description="Public event topics, partner accounts and subscriptions, signed webhooks with "
                    "replay, the pull API and the event catalogue.")
