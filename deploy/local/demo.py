"""Demo data for `make dev`: a few inbound emails in the "demo" workspace, sent through
ingest's public endpoint exactly as a mail provider would, so every service has data."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import httpx

from crmkit.auth import issue_token

WORKSPACE = "demo"
PEOPLE = [
    ("Ada Lovelace", "ada@example.com", "My order arrived damaged"),
    ("Grace Hopper", "grace@example.com", "Invoice question for November"),
    ("Alan Turing", "alan@example.com", "Can I upgrade my plan?"),
]


def demo_email(name: str, address: str, subject: str, sent: datetime) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{address}>"
    message["To"] = "support@acme.example"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="demo.example")
    message["Date"] = format_datetime(sent)
    message.set_content(f"Hello,\n\n{subject}. Thanks!\n\n{name.split()[0]}")
    return message.as_bytes()


def load_demo(secret: str, ports: dict[str, tuple[int, int]]) -> str:
    """Send the demo emails and wait until their tickets exist; return an admin token."""
    token = issue_token(secret, subject="demo-admin", workspace_id=WORKSPACE, roles=["admin"],
                        ttl_seconds=12 * 3600)
    headers = {"Authorization": f"Bearer {token}"}
    ingest = f"http://127.0.0.1:{ports['ingest'][0]}"
    tickets = f"http://127.0.0.1:{ports['ticketing'][0]}/v1/tickets"
    with httpx.Client(headers=headers, timeout=10) as client:
        existing = len(client.get(tickets).json()["items"])
        if existing >= len(PEOPLE):
            return token  # loaded on an earlier run: the data folder keeps it
        now = datetime.now(UTC)
        for i, (name, address, subject) in enumerate(PEOPLE):
            raw = demo_email(name, address, subject, now - timedelta(hours=i))
            response = client.post(f"{ingest}/v1/channels/email/inbound", content=raw,
                                   headers={"Content-Type": "message/rfc822"})
            response.raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(client.get(tickets).json()["items"]) >= len(PEOPLE):
                break
            time.sleep(0.3)
    return token
