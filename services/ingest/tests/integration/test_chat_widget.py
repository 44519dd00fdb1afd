"""The chat widget in a real browser (Debian's Chromium, headless, driven by Playwright): a
person opens the demo page served by ingest, writes, the message becomes an interaction, an
agent's reply sent through crm.outbound.v1 shows up in the page, and a reload resumes the
conversation. Once over the WebSocket, once over the long-poll fallback."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Error, Page, async_playwright, expect

from crm_ingest.domain.chat import provider_message_id
from crm_ingest.outbound.base import OutboundRequest
from crm_ingest.wire import outbound_requested
from crmkit.ids import uuid7
from crmkit.testing import bearer, publish

from .chat_support import served
from .conftest import CHAT_WIDGET, WORKSPACE, Platform

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_THERE = CHROMIUM.exists()
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
async def base_url(platform: Platform) -> AsyncIterator[str]:
    async with served(platform.ingest_app) as url:
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_THERE:
        pytest.fail(f"the widget test needs Debian's Chromium at {CHROMIUM} (apt-get install chromium); "
                    f"found {shutil.which('chromium') or 'none on PATH'}")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                                        timeout=30_000)
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} does not start here: {exc.message}")
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()  # its own localStorage: a new visitor
    opened = await context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    yield opened
    await context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "page error" in p], problems


async def chat_in(page: Page, text: str) -> None:
    await page.locator(".crm-chat-input").fill(text)
    await page.locator(".crm-chat-send").click()


@pytest.mark.parametrize("transport", ["ws", "poll"])
async def test_a_person_chats_in_the_page_and_an_agents_reply_arrives(
        platform: Platform, base_url: str, page: Page, transport: str) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    await page.goto(f"{base_url}/chat/demo?widget={CHAT_WIDGET}&transport={transport}")
    await page.locator(".crm-chat-open").click()
    question = f"Hello from the browser <b>{transport}</b>"
    await chat_in(page, question)
    mine = page.locator('.crm-chat-inbound[data-seq="1"]')
    await expect(mine.locator(".crm-chat-text")).to_have_text(question)
    await expect(mine).not_to_have_class(re.compile("crm-chat-pending"))  # acknowledged
    assert await page.locator(".crm-chat-log b").count() == 0  # text, never markup

    saved = await page.evaluate(
        "key => JSON.parse(localStorage.getItem(key))", f"crm-chat:{base_url}:{CHAT_WIDGET}")
    session_id = saved["sessionId"]
    stored = await platform.wait_stored(provider_message_id(session_id, 1), "chat")
    assert (stored["sender_name"], stored["text"], stored["conversation_id"]) == ("", question, session_id)

    agent = bearer(platform.token)
    typing = await platform.ingest.post(f"/v1/chat/sessions/{session_id}/typing", headers=agent)
    assert typing.status_code == 204
    await expect(page.locator(".crm-chat-typing")).to_be_visible()

    answer = f"An agent here: how can I help? ({transport})"
    await publish(platform.infra, [outbound_requested(OutboundRequest(
        id=f"reply-{uuid7()}", workspace_id=WORKSPACE, contact_id=stored["contact_id"], channel="chat",
        recipient_kind="chat_visitor", recipient=stored["sender"], text=answer, conversation_id=session_id))])
    await expect(page.locator('.crm-chat-outbound[data-seq="2"] .crm-chat-text')).to_have_text(answer)

    await page.reload()
    await page.locator(".crm-chat-open").click()
    await expect(page.locator(".crm-chat-message .crm-chat-text")).to_have_text([question, answer])
    # The transport it was meant to use, not a fallback taken silently.
    assert bool(sockets) == (transport == "ws"), sockets
