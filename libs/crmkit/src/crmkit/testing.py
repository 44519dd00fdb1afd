"""Helpers for the services' tests: tokens, free ports, and an app run in-process with its
whole lifespan (database, broker, gRPC server, consumers) against the real servers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import grpc
import httpx
from fastapi import FastAPI

from crmkit.auth import Authenticator, issue_token
from crmkit.kafka import Event, Producer, make_event
from crmkit.settings import InfraSettings
from crmkit.topics import CONTACTS, INTERACTIONS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token_for(infra: InfraSettings, workspace_id: str, *, roles: tuple[str, ...] = ("admin",),
              scopes: tuple[str, ...] = (), subject: str = "tester") -> str:
    return issue_token(infra.jwt_secret.get_secret_value(), subject=subject,
                       workspace_id=workspace_id, roles=roles, scopes=scopes)


def service_token_for(infra: InfraSettings, workspace_id: str, service: str = "tests") -> str:
    """A token as a service's Runtime mints it for its calls to another service."""
    return Authenticator(infra).service_token(service, workspace_id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grpc_auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@asynccontextmanager
async def running_app(app: FastAPI, *, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and give an HTTP client that calls it in-process."""
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
        async with client:
            if wait_ready:
                await eventually(lambda: _is_ready(client), timeout=60, what="the app to be ready")
            yield client


async def _is_ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 45.0,
                     interval: float = 0.1, what: str = "the condition") -> None:
    """Wait until ``check()`` is true: for effects that travel through the broker."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def interaction_event(
    workspace: str,
    contact_id: str,
    interaction_id: str,
    occurred_at: datetime,
    *,
    subject: str = "",
    message_id: str = "",
    in_reply_to: str = "",
    references: tuple[str, ...] = (),
    kind: str = "message",
    channel: str = "email",
    conversation_id: str = "",
    sender: tuple[str, str] = ("email", "someone@example.com"),
    text: str = "hello",
) -> Event:
    """A ``crm.interactions.v1`` event as ingest publishes it, for consumers' tests.
    ``sender`` is the identity's kind as contacts names it and its value."""
    from crm.common.v1 import common_pb2
    from crm.ingest.v1 import events_pb2, interaction_pb2

    item = interaction_pb2.Interaction(
        id=interaction_id, workspace_id=workspace, contact_id=contact_id,
        channel=f"CHANNEL_{channel.upper()}", direction=interaction_pb2.DIRECTION_INBOUND,
        sender=common_pb2.Identity(kind=f"IDENTITY_KIND_{sender[0].upper()}", value=sender[1]),
        subject=subject, text=text, kind=f"INTERACTION_KIND_{kind.upper()}",
        thread=interaction_pb2.ThreadKeys(message_id=message_id, in_reply_to=in_reply_to,
                                          references=list(references), conversation_id=conversation_id),
    )
    item.occurred_at.FromDatetime(occurred_at)
    return make_event(topic=INTERACTIONS, type="crm.interactions.interaction.recorded.v1",
                      source="/crm/ingest", workspace=workspace, subject=contact_id,
                      payload=events_pb2.InteractionRecorded(interaction=item))


def contact_merged_event(workspace: str, loser_id: str, survivor_id: str) -> Event:
    """A ``crm.contacts.contact.merged.v1`` event as contacts publishes it, for consumers' tests."""
    from crm.contacts.v1 import events_pb2

    merged = events_pb2.ContactMerged(workspace_id=workspace, survivor_id=survivor_id, loser_id=loser_id)
    return make_event(topic=CONTACTS, type="crm.contacts.contact.merged.v1", source="/crm/contacts",
                      workspace=workspace, subject=loser_id, payload=merged)


async def publish(infra: InfraSettings, events: list[Event]) -> None:
    producer = Producer(infra, client_id="tests")
    await producer.start()
    try:
        await producer.publish(events)
    finally:
        await producer.stop()


async def export_personal_data(grpc_port: int, token: str | None, contact_ids: list[str]) -> Any:
    """Call a service's ``crm.common.v1.PersonalDataService.ExportPersonalData`` (on 127.0.0.1)
    with ``token`` (none when None) and return its ``PersonalDataPart``."""
    from crm.common.v1 import personal_data_pb2, personal_data_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = personal_data_pb2_grpc.PersonalDataServiceStub(channel)
        return await stub.ExportPersonalData(
            personal_data_pb2.ExportPersonalDataRequest(contact_ids=contact_ids), timeout=10,
            metadata=grpc_auth(token) if token else None)
