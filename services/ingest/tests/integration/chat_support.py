"""What the web chat tests share: ingest served over a real loopback socket (WebSockets and a
browser need one; the shared platform calls the app in-process), and a visitor's calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from crm_ingest.chat.service import ChatService
from crm_ingest.domain.chat import sign_visitor_email
from crmkit.testing import eventually, free_port

from .conftest import CHAT_IDENTITY_SECRET, CHAT_ORIGIN, CHAT_WIDGET, Platform


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` (its lifespan already running) on a loopback port: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None, access_log=False,
                                           timeout_graceful_shutdown=3))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started, timeout=10, what="the chat server to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def signed(email: str, secret: str = CHAT_IDENTITY_SECRET) -> dict[str, str]:
    """A logged-in person's email, with the signature the website's backend makes of it."""
    return {"email": email, "email_signature": sign_visitor_email(secret, email)}


def chat_of(platform: Platform) -> ChatService:
    chat = platform.ingest_app.state.chat
    assert isinstance(chat, ChatService)
    return chat


class Visitor:
    """A visitor of CHAT_WIDGET on CHAT_ORIGIN's pages, through the REST side."""

    def __init__(self, base_url: str, origin: str = CHAT_ORIGIN) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=f"{base_url}/v1/chat/{CHAT_WIDGET}",
                                      headers={"Origin": origin}, timeout=30)
        self.token = ""
        self.session_id = ""
        self.visitor_id = ""

    async def __aenter__(self) -> Visitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def start(self, **about: Any) -> dict[str, Any]:
        response = await self.http.post("/sessions", json={"token": self.token, **about} if self.token
                                        else about)
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        self.token, self.session_id, self.visitor_id = body["token"], body["session_id"], body["visitor_id"]
        return body

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def send(self, client_id: str, text: str) -> httpx.Response:
        return await self.http.post("/messages", json={"client_id": client_id, "text": text},
                                    headers=self.auth)

    async def messages(self, after: int = 0, wait: float = 0) -> dict[str, Any]:
        response = await self.http.get("/messages", params={"after": after, "wait": wait}, headers=self.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def socket_url(self, after: int = 0, token: str | None = None) -> str:
        ws = self.base_url.replace("http://", "ws://")
        token = self.token if token is None else token
        return f"{ws}/v1/chat/{CHAT_WIDGET}/ws?token={token}&after={after}"


def frames_of(raw: str | bytes) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(raw)
    return frame
