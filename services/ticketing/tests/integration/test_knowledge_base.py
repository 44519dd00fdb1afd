"""The knowledge base against real PostgreSQL and the broker: CRUD with ETags, full-text search
per locale, the public help centre, and the articles suggested for a ticket."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from crm.ticketing.v1 import events_pb2
from crm_ticketing.main import create_app
from crm_ticketing.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, interaction_event, publish, running_app, token_for
from crmkit.topics import TICKETS

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PUBLIC_BURST = 10


class Kb:
    """The app, an agents' client (in-process, from 127.0.0.1) and public clients by address."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, infra: InfraSettings) -> None:
        self.app = app
        self.client = client
        self.infra = infra

    def headers(self, workspace: str, role: str = "support", **extra: str) -> dict[str, str]:
        return {**bearer(token_for(self.infra, workspace, roles=(role,))), **extra}

    async def create(self, workspace: str, **fields: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/kb/articles", json=fields, headers=self.headers(workspace))
        assert response.status_code == 201, response.text
        article: dict[str, Any] = response.json()
        return article

    async def act(self, workspace: str, article: dict[str, Any], action: str) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/kb/articles/{article['id']}/{action}",
            headers=self.headers(workspace, **{"If-Match": f'"{article["version"]}"'}))
        assert response.status_code == 200, response.text
        changed: dict[str, Any] = response.json()
        return changed

    async def published(self, workspace: str, **fields: Any) -> dict[str, Any]:
        return await self.act(workspace, await self.create(workspace, **fields), "publish")

    async def find(self, workspace: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/kb/articles", params=params, headers=self.headers(workspace))
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def public(self) -> httpx.AsyncClient:
        """A client without credentials from an address of its own (its own rate limit)."""
        address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=(address, 40000)),
                                 base_url="http://app")


@pytest.fixture(scope="module")
async def kb(infra: InfraSettings) -> AsyncIterator[Kb]:
    """One app for the module, with its own database and consumer group."""
    infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}kb_",
                                     "consumer_group_prefix": f"{infra.consumer_group_prefix}kb."})
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        public_kb_rate_per_second=0.1, public_kb_burst=PUBLIC_BURST)
    app = create_app(settings)
    async with running_app(app) as client:
        yield Kb(app, client, infra)


def workspace() -> str:
    return f"ws-kb-{secrets.token_hex(4)}"


async def test_articles_are_written_with_etags_and_problems_name_what_is_wrong(kb: Kb) -> None:
    ws = workspace()
    client = kb.client
    created = await client.post("/v1/kb/categories", json={"name": "Billing & Payments"},
                                headers=kb.headers(ws))
    assert created.status_code == 201
    assert created.headers["ETag"] == '"1"'
    category = created.json()
    assert category["slug"] == "billing-payments"

    article = await kb.create(ws, title="Get a refund", locale="en-us", category_id=category["id"],
                              body='<p onclick="x()">Open <b>Orders</b></p><script>steal()</script>')
    assert (article["status"], article["locale"], article["slug"]) == ("draft", "en-US", "get-a-refund")
    assert article["body"] == "<p>Open <b>Orders</b></p>"
    assert article["author"] == "tester"
    url = f"/v1/kb/articles/{article['id']}"
    read = await client.get(url, headers=kb.headers(ws, role="analyst"))
    assert read.headers["ETag"] == '"1"'
    assert [t["locale"] for t in read.json()["translations"]] == ["en-US"]

    # If-Match: required, and only the current version is taken.
    assert (await client.patch(url, json={"title": "Refunds"}, headers=kb.headers(ws))).status_code == 428
    changed = await client.patch(url, json={"title": "Refunds"},
                                 headers=kb.headers(ws, **{"If-Match": '"1"'}))
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"2"'
    assert (changed.json()["title"], changed.json()["slug"]) == ("Refunds", "get-a-refund")
    stale = await client.patch(url, json={"title": "Lost"}, headers=kb.headers(ws, **{"If-Match": '"1"'}))
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"2"'
    assert stale.headers["content-type"] == "application/problem+json"

    # The same slug in the same locale is a conflict; in another locale it is a translation.
    duplicate = await client.post("/v1/kb/articles", json={"title": "Get a refund", "locale": "en-US"},
                                  headers=kb.headers(ws))
    assert duplicate.status_code == 409
    assert duplicate.json()["errors"] == [{"field": "slug", "message": "another article in this locale has "
                                                                       "this slug"}]
    german = await kb.create(ws, title="Get a refund", locale="de", translation_of=article["id"],
                             body="<p>Erstattung</p>")
    assert german["group_id"] == article["group_id"]
    again = await client.post("/v1/kb/articles", headers=kb.headers(ws),
                              json={"title": "Zweite", "locale": "de", "translation_of": article["id"]})
    assert again.status_code == 409
    translations = (await client.get(url, headers=kb.headers(ws))).json()["translations"]
    assert sorted(t["locale"] for t in translations) == ["de", "en-US"]

    # 422s name their fields.
    bad = await client.post("/v1/kb/articles", json={"title": "", "locale": "en_US", "slug": "No Slug"},
                            headers=kb.headers(ws))
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["title", "locale", "slug"]
    unknown = await client.post("/v1/kb/articles", headers=kb.headers(ws),
                                json={"title": "T", "locale": "en", "colour": "red"})
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["body.colour"]
    assert (await client.get("/v1/kb/articles", params={"cursor": "forged"},
                             headers=kb.headers(ws))).json()["type"].endswith("/invalid-cursor")

    # The lifecycle: publish (needs a body), not twice, unpublish, archive.
    empty = await kb.create(ws, title="Empty", locale="en")
    refused = await client.post(f"/v1/kb/articles/{empty['id']}/publish",
                                headers=kb.headers(ws, **{"If-Match": '"1"'}))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body"
    published = await kb.act(ws, changed.json(), "publish")
    assert (published["status"], published["version"]) == ("published", 3)
    assert published["published_at"] is not None
    twice = await client.post(f"{url}/publish", headers=kb.headers(ws, **{"If-Match": '"3"'}))
    assert (twice.status_code, twice.json()["type"].rsplit("/", 1)[1]) == (422, "invalid-transition")
    draft = await kb.act(ws, published, "unpublish")
    assert draft["status"] == "draft"
    archived = await kb.act(ws, draft, "archive")
    assert archived["status"] == "archived"

    # Readers may not write; a category in use is not deleted.
    assert (await client.post("/v1/kb/articles", json={"title": "x", "locale": "en"},
                              headers=kb.headers(ws, role="analyst"))).status_code == 403
    in_use = await client.delete(f"/v1/kb/categories/{category['id']}",
                                 headers=kb.headers(ws, **{"If-Match": '"1"'}))
    assert in_use.status_code == 409
    gone = await client.delete(url, headers=kb.headers(ws, **{"If-Match": f'"{archived["version"]}"'}))
    assert gone.status_code == 204
    assert (await client.get(url, headers=kb.headers(ws))).status_code == 404


async def test_categories_form_a_tree_and_page_by_position(kb: Kb) -> None:
    ws = workspace()
    ids = []
    for n, name in enumerate(["Returns", "Account", "Billing"]):
        response = await kb.client.post("/v1/kb/categories", json={"name": name, "position": n % 2},
                                        headers=kb.headers(ws))
        ids.append(response.json()["id"])
    first = (await kb.client.get("/v1/kb/categories", params={"limit": 2}, headers=kb.headers(ws))).json()
    rest = (await kb.client.get("/v1/kb/categories", params={"cursor": first["next_cursor"]},
                                headers=kb.headers(ws))).json()
    assert [c["name"] for c in first["items"] + rest["items"]] == ["Billing", "Returns", "Account"]
    assert rest["next_cursor"] is None
    child = await kb.client.post("/v1/kb/categories", json={"name": "Refunds", "parent_id": ids[0]},
                                 headers=kb.headers(ws))
    assert child.status_code == 201
    # A category cannot move under its own child, nor under another workspace's category.
    loop = await kb.client.patch(f"/v1/kb/categories/{ids[0]}", json={"parent_id": child.json()["id"]},
                                 headers=kb.headers(ws, **{"If-Match": '"1"'}))
    assert (loop.status_code, loop.json()["errors"][0]["field"]) == (422, "parent_id")
    elsewhere = await kb.client.post("/v1/kb/categories", json={"name": "X", "parent_id": ids[0]},
                                     headers=kb.headers(workspace()))
    assert elsewhere.status_code == 422
    taken = await kb.client.post("/v1/kb/categories", json={"name": "Returns"}, headers=kb.headers(ws))
    assert (taken.status_code, taken.json()["taken"]) == (409, "returns")


async def test_a_title_match_ranks_above_a_body_match_with_highlighted_snippets(kb: Kb) -> None:
    ws = workspace()
    in_body = await kb.published(ws, title="Shipping times", locale="en",
                                 body="<p>Parcels take three days. A refund for a lost parcel is automatic; "
                                      "see the refund page for every refund rule.</p>")
    in_title = await kb.published(ws, title="Refund policy", locale="en",
                                  body="<p>Money goes back to the card you paid with.</p>")
    await kb.create(ws, title="Refund drafts", locale="en", body="<p>refund</p>")
    found = await kb.find(ws, q="refund", status="published")
    assert [a["id"] for a in found] == [in_title["id"], in_body["id"]]
    assert found[0]["score"] > found[1]["score"] > 0
    assert "<mark>refund</mark>" in found[1]["snippet"]
    assert len(await kb.find(ws, q="refund")) == 3  # drafts too, without a status filter

    page = (await kb.client.get("/v1/kb/articles", params={"q": "refund", "status": "published", "limit": 1},
                                headers=kb.headers(ws))).json()
    second = (await kb.client.get("/v1/kb/articles", params={"q": "refund", "status": "published",
                                                             "cursor": page["next_cursor"]},
                                  headers=kb.headers(ws))).json()
    assert [a["id"] for a in page["items"] + second["items"]] == [in_title["id"], in_body["id"]]
    assert second["next_cursor"] is None
    # Websearch syntax: a phrase, and a word excluded.
    assert [a["id"] for a in await kb.find(ws, q='"lost parcel"')] == [in_body["id"]]
    excluded = await kb.find(ws, q="refund -parcel", status="published")
    assert [a["title"] for a in excluded] == ["Refund policy"]
    # Without text: by title.
    assert [a["title"] for a in await kb.find(ws)] == ["Refund drafts", "Refund policy", "Shipping times"]


async def test_each_locale_is_stemmed_by_its_own_language(kb: Kb) -> None:
    ws = workspace()
    english = await kb.published(ws, title="Run an export", locale="en",
                                 body="<p>The export runs nightly. Rechnungen are not included.</p>")
    german = await kb.published(ws, title="Rechnungen herunterladen", locale="de-DE",
                                body="<p>Alle Rechnungen finden Sie im Kundenkonto.</p>")
    assert [a["id"] for a in await kb.find(ws, q="running", locale="en")] == [english["id"]]
    assert [a["id"] for a in await kb.find(ws, q="running")] == [english["id"]]
    # German stemming finds "Rechnungen" for "Rechnung"; the English article's "Rechnungen"
    # is an English word to its stemmer, which "Rechnung" does not match.
    assert [a["id"] for a in await kb.find(ws, q="Rechnung", locale="de-DE")] == [german["id"]]
    assert [a["id"] for a in await kb.find(ws, q="Rechnung")] == [german["id"]]
    bad = await kb.client.get("/v1/kb/articles", params={"locale": "de_DE"}, headers=kb.headers(ws))
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "locale")


async def test_the_public_reads_published_articles_without_a_token_and_never_drafts(kb: Kb) -> None:
    ws = workspace()
    live = await kb.published(ws, title="Reset your password", locale="en",
                              body='<p>Use <a href="https://example.com/reset">the reset page</a>.</p>')
    await kb.published(ws, title="Passwort zurücksetzen", locale="de", slug="reset-your-password",
                       translation_of=live["id"], body="<p>Die Seite zum Zurücksetzen.</p>")
    await kb.create(ws, title="Password policy draft", locale="en", body="<p>password rules</p>")
    async with kb.public() as public:
        listed = await public.get(f"/v1/public/kb/{ws}/articles", params={"locale": "en"})
        assert listed.status_code == 200
        assert [a["slug"] for a in listed.json()["items"]] == ["reset-your-password"]
        assert listed.headers["cache-control"] == "public, max-age=60"
        found = (await public.get(f"/v1/public/kb/{ws}/articles", params={"q": "password"})).json()["items"]
        assert [a["title"] for a in found] == ["Reset your password"]

        article = await public.get(f"/v1/public/kb/{ws}/articles/reset-your-password",
                                   params={"locale": "en"})
        assert article.status_code == 200
        body = article.json()
        assert body["title"] == "Reset your password"
        assert 'rel="noopener noreferrer"' in body["body"]
        assert body["translations"] == [{"locale": "de", "slug": "reset-your-password"},
                                        {"locale": "en", "slug": "reset-your-password"}]
        assert not {"id", "author", "status"} & set(body)
        assert article.headers["access-control-allow-origin"] == "*"
        again = await public.get(f"/v1/public/kb/{ws}/articles/reset-your-password", params={"locale": "en"},
                                 headers={"If-None-Match": article.headers["etag"]})
        assert again.status_code == 304
        german = await public.get(f"/v1/public/kb/{ws}/articles/reset-your-password", params={"locale": "de"})
        assert german.json()["title"] == "Passwort zurücksetzen"

        draft = await public.get(f"/v1/public/kb/{ws}/articles/password-policy-draft")
        assert (draft.status_code, draft.headers["content-type"]) == (404, "application/problem+json")
        elsewhere = await public.get(f"/v1/public/kb/{workspace()}/articles/reset-your-password")
        assert elsewhere.status_code == 404
        await kb.act(ws, live, "unpublish")
        assert (await public.get(f"/v1/public/kb/{ws}/articles/reset-your-password",
                                 params={"locale": "en"})).status_code == 404
        # Public reads take no credentials, and the agents' routes still need them.
        assert (await public.get("/v1/kb/articles")).status_code == 401


async def test_the_public_endpoint_is_rate_limited_per_address(kb: Kb) -> None:
    ws = workspace()
    async with kb.public() as public, kb.public() as neighbour:
        answers = [(await public.get(f"/v1/public/kb/{ws}/articles")).status_code
                   for _ in range(PUBLIC_BURST + 1)]
        assert answers == [200] * PUBLIC_BURST + [429]
        limited = await public.get(f"/v1/public/kb/{ws}/articles/anything")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["type"].endswith("/too-many-requests")
        assert (await neighbour.get(f"/v1/public/kb/{ws}/articles")).status_code == 200


async def test_a_ticket_opened_by_an_email_is_suggested_published_articles_on_its_text(kb: Kb) -> None:
    ws = workspace()
    gear = await kb.published(ws, title="Repairing a broken gear", locale="en",
                              body="<p>Send us a photo of the gear.</p>")
    refunds = await kb.published(ws, title="Refund policy", locale="en",
                                 body="<p>Broken items are refunded in full.</p>")
    hours = await kb.published(ws, title="Opening hours", locale="en", body="<p>We open at nine.</p>")
    await kb.create(ws, title="Broken gear draft", locale="en", body="<p>gear</p>")
    await kb.published(workspace(), title="Broken gear elsewhere", locale="en", body="<p>gear</p>")
    contact = str(uuid7())
    await publish(kb.infra, [interaction_event(ws, contact, f"{contact}-1", T0,
                                               subject="Re: My gear is broken!",
                                               message_id=f"{contact}@example.com")])
    tickets: list[dict[str, Any]] = []

    async def opened() -> bool:
        nonlocal tickets
        tickets = (await kb.client.get("/v1/tickets", params={"contact_id": contact},
                                       headers=kb.headers(ws))).json()["items"]
        return len(tickets) == 1

    await eventually(opened, what="the email's ticket")
    url = f"/v1/tickets/{tickets[0]['id']}/suggested-articles"
    suggested = (await kb.client.get(url, headers=kb.headers(ws, role="analyst"))).json()["items"]
    assert [a["id"] for a in suggested] == [gear["id"], refunds["id"]]
    assert suggested[0]["score"] > suggested[1]["score"] > 0
    assert "<mark>" in suggested[1]["snippet"]
    assert len((await kb.client.get(url, params={"limit": 1}, headers=kb.headers(ws))).json()["items"]) == 1
    assert (await kb.client.get(url, params={"locale": "de"}, headers=kb.headers(ws))).json()["items"] == []
    assert (await kb.client.get(url, headers=kb.headers(workspace()))).status_code == 404

    # A subject that says nothing: the customer's first message is what is matched.
    vague = str(uuid7())
    await publish(kb.infra, [interaction_event(ws, vague, f"{vague}-1", T0, subject="Question",
                                               message_id=f"{vague}@example.com",
                                               text="Until when are you open on Saturdays? Your hours?")])

    async def vague_opened() -> bool:
        nonlocal tickets
        tickets = (await kb.client.get("/v1/tickets", params={"contact_id": vague},
                                       headers=kb.headers(ws))).json()["items"]
        return len(tickets) == 1

    await eventually(vague_opened, what="the vague email's ticket")
    found = (await kb.client.get(f"/v1/tickets/{tickets[0]['id']}/suggested-articles",
                                 headers=kb.headers(ws))).json()["items"]
    assert [a["id"] for a in found] == [hours["id"]]


async def test_another_workspace_sees_and_changes_nothing(kb: Kb) -> None:
    ws, other = workspace(), workspace()
    article = await kb.published(ws, title="Secret plans", locale="en", body="<p>secret</p>")
    category = (await kb.client.post("/v1/kb/categories", json={"name": "Internal"},
                                     headers=kb.headers(ws))).json()
    url = f"/v1/kb/articles/{article['id']}"
    assert (await kb.client.get(url, headers=kb.headers(other))).status_code == 404
    assert (await kb.client.patch(url, json={"title": "Mine"},
                                  headers=kb.headers(other, **{"If-Match": '"2"'}))).status_code == 404
    assert (await kb.client.post(f"{url}/unpublish",
                                 headers=kb.headers(other, **{"If-Match": '"2"'}))).status_code == 404
    assert (await kb.client.delete(url, headers=kb.headers(other, **{"If-Match": '"2"'}))).status_code == 404
    assert (await kb.client.get(f"/v1/kb/categories/{category['id']}",
                                headers=kb.headers(other))).status_code == 404
    assert await kb.find(other, q="secret") == []
    assert await kb.find(other) == []
    assert (await kb.client.get("/v1/kb/categories", headers=kb.headers(other))).json()["items"] == []
    # Nor can it file its article under this workspace's category or translate its article.
    for fields in ({"category_id": category["id"]}, {"translation_of": article["id"]}):
        response = await kb.client.post("/v1/kb/articles", json={"title": "Mine", "locale": "de", **fields},
                                        headers=kb.headers(other))
        assert (response.status_code, response.json()["errors"][0]["field"]) == (422, next(iter(fields)))
    assert (await kb.client.get(url, headers=kb.headers(ws))).json()["title"] == "Secret plans"


async def test_publishing_and_unpublishing_are_announced_on_the_tickets_topic(kb: Kb) -> None:
    ws = workspace()
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=kb.infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        article = await kb.published(ws, title="Track a parcel", locale="en", body="<p>Use the link.</p>")
        republished = await kb.act(ws, await kb.act(ws, article, "archive"), "publish")
        if_match = {"If-Match": f'"{republished["version"]}"'}
        url = f"/v1/kb/articles/{article['id']}"
        assert (await kb.client.delete(url, headers=kb.headers(ws, **if_match))).status_code == 204
        key = f"{ws}:{article['id']}".encode()
        found: list[Envelope] = []
        async with asyncio.timeout(45):
            while len(found) < 4:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [Envelope.from_record(r.headers, r.value) for r in records if r.key == key]
    finally:
        await consumer.stop()
    assert [e.type.rsplit(".", 2)[1] for e in found] == ["published", "unpublished"] * 2
    published = found[0].parse(events_pb2.ArticlePublished)
    assert isinstance(published, events_pb2.ArticlePublished)
    assert (published.article.slug, published.article.locale, published.article.version) == (
        "track-a-parcel", "en", 2)
    archived, gone = (e.parse(events_pb2.ArticleUnpublished) for e in (found[1], found[3]))
    assert isinstance(archived, events_pb2.ArticleUnpublished)
    assert isinstance(gone, events_pb2.ArticleUnpublished)
    assert (archived.article.status, archived.deleted) == (events_pb2.ARTICLE_STATUS_ARCHIVED, False)
    assert (gone.article.status, gone.deleted) == (events_pb2.ARTICLE_STATUS_PUBLISHED, True)
