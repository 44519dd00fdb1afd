"""The contacts process: HTTP API, gRPC server, outbox relay and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from crm.contacts.v1 import contacts_pb2_grpc
from crm_contacts.api import duplicates, routes, segments
from crm_contacts.consumers.interactions import interactions_handlers
from crm_contacts.grpc.servicer import ContactsServicer
from crm_contacts.service import ContactsService
from crm_contacts.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.grpc import GrpcAuth
from crmkit.topics import INTERACTIONS

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.postgres(MIGRATIONS)
            service = ContactsService(db)
            await runtime.outbox_relay(db)
            servicer = ContactsServicer(service, GrpcAuth(runtime.authenticator))
            await runtime.serve_grpc({
                "crm.contacts.v1.ContactsService":
                    partial(contacts_pb2_grpc.add_ContactsServiceServicer_to_server, servicer),
            })
            await runtime.consumer({INTERACTIONS: interactions_handlers(service)})
            app.state.service = service
            app.state.runtime = runtime
            yield

    routers = [routes.router, segments.router, duplicates.router]
    return create_service_app(settings, lifespan, routers, title="CRM contacts",
                              description="People, companies, identities, segments and the 360 view.")
