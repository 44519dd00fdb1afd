"""The value types of ingest's settings: each channel's accounts, and each configured channel
as the adapters receive it. Settings (settings.py) reads them from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field, SecretStr, model_validator

from crm_ingest.outbound.email import TlsMode
from crmkit.settings import strong_secret


class ChannelAccount(BaseModel):
    """Where the messages to one account of a channel go (a Facebook Page, an Instagram
    account, a Telegram bot, an SMS number), and how many authentic requests for it one
    replica takes (more are answered 429 with Retry-After)."""

    workspace_id: str = Field(min_length=1, max_length=128)
    rate_per_second: float = Field(default=20.0, gt=0)
    burst: int = Field(default=200, ge=1)


class CommerceStore(ChannelAccount):
    """One e-commerce store (a value of INGEST_COMMERCE_STORES): its workspace and the secret
    it signs its requests with."""

    secret: SecretStr
    previous_secret: SecretStr | None = None  # accepted too while the store rotates its secret

    @model_validator(mode="after")
    def _strong_secrets(self) -> CommerceStore:
        strong_secret(self.secret, "an INGEST_COMMERCE_STORES secret")
        if self.previous_secret is not None:
            strong_secret(self.previous_secret, "an INGEST_COMMERCE_STORES previous_secret")
        return self

    @property
    def secrets(self) -> tuple[bytes, ...]:
        given = (self.secret, self.previous_secret)
        return tuple(s.get_secret_value().encode() for s in given if s is not None)


@dataclass(frozen=True)
class MetaChannel:
    """A Meta channel's settings (WhatsApp, Messenger, Instagram), there only when it is
    configured."""

    app_secret: bytes
    verify_token: str
    # business phone number id, Page id or Instagram account id -> its workspace
    accounts: dict[str, ChannelAccount]
    max_bytes: int


@dataclass(frozen=True)
class TelegramChannel:
    secret_token: bytes
    bots: dict[str, ChannelAccount]  # the bot's name in the webhook URL -> its workspace
    max_bytes: int


@dataclass(frozen=True)
class SmsChannel:
    auth_token: bytes
    public_url: str  # the webhook URL as Twilio calls it, which it signs
    numbers: dict[str, ChannelAccount]  # our number (E.164) -> its workspace
    max_bytes: int


@dataclass(frozen=True)
class CommerceChannel:
    stores: dict[str, CommerceStore]  # the store's name in the webhook URL -> its workspace
    max_bytes: int


def all_or_nothing(channel: str, given: dict[str, bool]) -> None:
    if any(given.values()) and not all(given.values()):
        names = ", ".join(f"INGEST_{name}" for name in given)
        raise ValueError(f"{names} go together: set all of them, or none to leave the {channel} "
                         "channel off")


def meta_channel(accounts: dict[str, ChannelAccount], app_secret: SecretStr | None,
                  verify_token: SecretStr | None, max_bytes: int) -> MetaChannel | None:
    if app_secret is None or verify_token is None:
        return None
    return MetaChannel(app_secret.get_secret_value().encode(), verify_token.get_secret_value(),
                       dict(accounts), max_bytes)


class ImapMailbox(BaseModel):
    """One mailbox folder polled over IMAP (an element of INGEST_IMAP_MAILBOXES)."""

    host: str = Field(min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 993 with tls, else 143
    tls: TlsMode = "tls"  # none: plain text; starttls: upgrade, required; tls: implicit TLS
    username: str = Field(min_length=1, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")
    password: SecretStr = Field(min_length=1)
    # Printable ASCII: a folder with other characters is named in IMAP's modified UTF-7.
    folder: str = Field(default="INBOX", min_length=1, max_length=255, pattern=r"^[\x20-\x7e]+$")
    workspace_id: str = Field(min_length=1, max_length=128)
    # How long to wait between syncs; with IDLE, the longest wait (servers drop it at 30 min).
    poll_seconds: float = Field(default=60.0, ge=1, le=1500)
    idle: bool = True  # wait with IMAP IDLE when the server has it, so new mail comes at once
    ca_file: str | None = None  # a PEM CA bundle to trust instead of the system's
    skip_existing: bool = False  # on the first sync, start after the messages already there

    @property
    def port_number(self) -> int:
        return self.port or (993 if self.tls == "tls" else 143)

    @property
    def key(self) -> str:
        """The mailbox's sync state key: a mailbox mapped to another workspace starts afresh."""
        return f"{self.workspace_id}:imap://{self.username}@{self.host}:{self.port_number}/{self.folder}"

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


class EmailSource(BaseModel):
    """One sender of the signed inbound-parse webhook (a value of INGEST_EMAIL_SOURCES)."""

    workspace_id: str = Field(min_length=1, max_length=128)
    secret: SecretStr
    previous_secret: SecretStr | None = None  # accepted too while the sender rotates its secret
    rate_per_second: float = Field(default=10.0, gt=0)  # authentic requests, per replica
    burst: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _strong_secrets(self) -> EmailSource:
        strong_secret(self.secret, "an INGEST_EMAIL_SOURCES secret")
        if self.previous_secret is not None:
            strong_secret(self.previous_secret, "an INGEST_EMAIL_SOURCES previous_secret")
        return self

    @property
    def secrets(self) -> tuple[bytes, ...]:
        given = (self.secret, self.previous_secret)
        return tuple(s.get_secret_value().encode() for s in given if s is not None)
