"""Helpers for the services' tests: tokens, free ports, and an app run in-process with its
whole lifespan (database, broker, gRPC server, consumers) against the real servers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from crmkit.auth import issue_token
from crmkit.settings import InfraSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token_for(infra: InfraSettings, workspace_id: str, *, roles: tuple[str, ...] = ("admin",),
              scopes: tuple[str, ...] = (), subject: str = "tester") -> str:
    return issue_token(infra.jwt_secret.get_secret_value(), subject=subject,
                       workspace_id=workspace_id, roles=roles, scopes=scopes)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
