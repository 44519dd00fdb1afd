"""What the proof suites share: the services they cover, the two workspaces, and the running
platform with its log folder and every service's OpenAPI document."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmkit.auth import issue_token

from ..e2e.conftest import CHANNELS_WORKSPACE, RUN_ID, Platform

ROOT = Path(__file__).resolve().parents[2]
# The services every suite covers. Adding one is one entry here plus, in _seed.py, the
# resources its path parameters name.
SERVICES = ("contacts", "pipeline", "ticketing", "campaigns", "ingest", "partners")
# B owns the data; A is a stranger to it. B is the workspace reached on every channel (its
# chat widget and WhatsApp number are configured on the platform), so B also has chat sessions.
WORKSPACE_B = CHANNELS_WORKSPACE
WORKSPACE_A = f"proof-a-{RUN_ID}"


# Every inbound channel on, into workspace B, so that each receiver's verification runs: the
# secrets the receivers check (the platform's WhatsApp secret is the e2e one).
CHANNEL_SECRETS = {name: secrets.token_urlsafe(32) for name in (
    "messenger", "instagram", "telegram", "sms", "commerce", "email_source", "verify")}
MESSENGER_PAGE, INSTAGRAM_ACCOUNT, TELEGRAM_BOT, SMS_NUMBER = (
    "200000000000091", "300000000000091", "proof_bot", "+15550100091")
COMMERCE_STORE, EMAIL_SOURCE = "proof-store", "proof-source"
SMS_URL = "https://proof.example/v1/channels/sms/webhook"  # the URL Twilio signs


def channels_env() -> dict[str, str]:
    to_b = {"workspace_id": CHANNELS_WORKSPACE}
    return {
        "INGEST_MESSENGER_PAGES": json.dumps({MESSENGER_PAGE: to_b}),
        "INGEST_MESSENGER_APP_SECRET": CHANNEL_SECRETS["messenger"],
        "INGEST_MESSENGER_VERIFY_TOKEN": CHANNEL_SECRETS["verify"],
        "INGEST_INSTAGRAM_ACCOUNTS": json.dumps({INSTAGRAM_ACCOUNT: to_b}),
        "INGEST_INSTAGRAM_APP_SECRET": CHANNEL_SECRETS["instagram"],
        "INGEST_INSTAGRAM_VERIFY_TOKEN": CHANNEL_SECRETS["verify"],
        "INGEST_TELEGRAM_BOTS": json.dumps({TELEGRAM_BOT: to_b}),
        "INGEST_TELEGRAM_SECRET_TOKEN": CHANNEL_SECRETS["telegram"],
        "INGEST_SMS_NUMBERS": json.dumps({SMS_NUMBER: to_b}),
        "INGEST_SMS_AUTH_TOKEN": CHANNEL_SECRETS["sms"],
        "INGEST_SMS_PUBLIC_URL": SMS_URL,
        "INGEST_COMMERCE_STORES": json.dumps(
            {COMMERCE_STORE: {**to_b, "secret": CHANNEL_SECRETS["commerce"]}}),
        "INGEST_EMAIL_SOURCES": json.dumps(
            {EMAIL_SOURCE: {**to_b, "secret": CHANNEL_SECRETS["email_source"]}}),
    }


@dataclass
class Proof:
    """The running platform plus what the suites share: its log folder and its OpenAPI."""

    platform: Platform
    log_dir: Path
    specs: dict[str, dict[str, Any]]

    def headers(self, workspace: str, role: str = "admin", subject: str = "proof-admin") -> dict[str, str]:
        token = issue_token(self.platform.secret, subject=subject, workspace_id=workspace, roles=[role])
        return {"Authorization": f"Bearer {token}"}

    def service_headers(self, workspace: str) -> tuple[tuple[str, str], ...]:
        """gRPC metadata with a token as a service's Runtime mints it for a peer."""
        token = issue_token(self.platform.secret, subject="service:proof", workspace_id=workspace,
                            roles=["service"], kind="service")
        return (("authorization", f"Bearer {token}"),)
