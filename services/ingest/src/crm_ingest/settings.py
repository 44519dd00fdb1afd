from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import SettingsConfigDict

from crm_ingest.channel_config import (
    ChannelAccount,
    CommerceChannel,
    CommerceStore,
    EmailSource,
    ImapMailbox,
    MetaChannel,
    SmsChannel,
    TelegramChannel,
    all_or_nothing,
    meta_channel,
)
from crm_ingest.chat.config import ChatConfig, ChatLimits, ChatWidget
from crm_ingest.domain.chat import RESERVED_WIDGET_KEYS, WIDGET_KEY
from crm_ingest.domain.commerce import STORE as COMMERCE_STORE
from crm_ingest.domain.meta import GRAPH_ID
from crm_ingest.domain.telegram import BOT as TELEGRAM_BOT
from crm_ingest.domain.telegram import secret_token_allowed
from crm_ingest.domain.twilio import E164
from crm_ingest.domain.whatsapp import PHONE_NUMBER_ID
from crm_ingest.outbound.email import TlsMode, mailbox
from crm_ingest.outbound.providers import PageSender, TelegramBot, TwilioSender, WhatsAppSender
from crmkit.settings import ServiceSettings, strong_secret


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    service_name: str = "ingest"
    http_port: int = 8005
    grpc_port: int = 50055
    contacts_grpc_target: str = "127.0.0.1:50051"
    # Larger inbound emails are refused with 413 before anything is stored. The raw message
    # travels on the internal topic, so it must fit a Kafka request (1 MiB by default) with
    # its headers; a raw-message archive (so that only a reference travels) lifts this later.
    max_email_bytes: int = Field(default=768 * 1024, ge=1024)
    # Attachments larger than this are described on their interaction but not kept.
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0, le=15 * 1024 * 1024)
    # WhatsApp Cloud API webhooks: on when all three are set, off (404) when none is. Meta
    # calls one URL per app, so each business phone number id maps to a workspace.
    whatsapp_accounts: dict[Annotated[str, StringConstraints(pattern=PHONE_NUMBER_ID)], ChannelAccount] = (
        Field(default_factory=dict))
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    # Meta sends deliveries of up to 3 MB; each message travels on as its own raw record.
    max_whatsapp_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _whatsappall_or_nothing(self) -> Settings:
        given = (bool(self.whatsapp_accounts), self.whatsapp_app_secret is not None,
                 self.whatsapp_verify_token is not None)
        if any(given) and not all(given):
            raise ValueError("INGEST_WHATSAPP_ACCOUNTS, INGEST_WHATSAPP_APP_SECRET and "
                             "INGEST_WHATSAPP_VERIFY_TOKEN go together: set all three, or none "
                             "to leave the WhatsApp channel off")
        if self.whatsapp_app_secret is not None:
            strong_secret(self.whatsapp_app_secret, "INGEST_WHATSAPP_APP_SECRET")
        if self.whatsapp_verify_token is not None:
            strong_secret(self.whatsapp_verify_token, "INGEST_WHATSAPP_VERIFY_TOKEN", min_length=16)
        return self

    @property
    def whatsapp(self) -> MetaChannel | None:
        if self.whatsapp_app_secret is None or self.whatsapp_verify_token is None:
            return None
        return MetaChannel(
            app_secret=self.whatsapp_app_secret.get_secret_value().encode(),
            verify_token=self.whatsapp_verify_token.get_secret_value(),
            accounts=dict(self.whatsapp_accounts),
            max_bytes=self.max_whatsapp_bytes,
        )

    # Messenger webhooks (Meta, Facebook Pages): on when all three are set, off (404) when
    # none is. Meta calls one URL per app, so each Page id maps to a workspace.
    messenger_pages: dict[Annotated[str, StringConstraints(pattern=GRAPH_ID)], ChannelAccount] = (
        Field(default_factory=dict))
    messenger_app_secret: SecretStr | None = None
    messenger_verify_token: SecretStr | None = None
    max_messenger_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _messengerall_or_nothing(self) -> Settings:
        all_or_nothing("Messenger", {"MESSENGER_PAGES": bool(self.messenger_pages),
                                      "MESSENGER_APP_SECRET": self.messenger_app_secret is not None,
                                      "MESSENGER_VERIFY_TOKEN": self.messenger_verify_token is not None})
        if self.messenger_app_secret is not None:
            strong_secret(self.messenger_app_secret, "INGEST_MESSENGER_APP_SECRET")
        if self.messenger_verify_token is not None:
            strong_secret(self.messenger_verify_token, "INGEST_MESSENGER_VERIFY_TOKEN", min_length=16)
        return self

    @property
    def messenger(self) -> MetaChannel | None:
        return meta_channel(self.messenger_pages, self.messenger_app_secret,
                             self.messenger_verify_token, self.max_messenger_bytes)

    # Instagram messaging webhooks (Meta): on when all three are set, off (404) when none is;
    # each Instagram professional account id maps to a workspace.
    instagram_accounts: dict[Annotated[str, StringConstraints(pattern=GRAPH_ID)], ChannelAccount] = (
        Field(default_factory=dict))
    instagram_app_secret: SecretStr | None = None
    instagram_verify_token: SecretStr | None = None
    max_instagram_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _instagramall_or_nothing(self) -> Settings:
        all_or_nothing("Instagram", {"INSTAGRAM_ACCOUNTS": bool(self.instagram_accounts),
                                      "INSTAGRAM_APP_SECRET": self.instagram_app_secret is not None,
                                      "INSTAGRAM_VERIFY_TOKEN": self.instagram_verify_token is not None})
        if self.instagram_app_secret is not None:
            strong_secret(self.instagram_app_secret, "INGEST_INSTAGRAM_APP_SECRET")
        if self.instagram_verify_token is not None:
            strong_secret(self.instagram_verify_token, "INGEST_INSTAGRAM_VERIFY_TOKEN", min_length=16)
        return self

    @property
    def instagram(self) -> MetaChannel | None:
        return meta_channel(self.instagram_accounts, self.instagram_app_secret,
                             self.instagram_verify_token, self.max_instagram_bytes)

    # Telegram Bot API webhooks: on when both are set, off (404) when neither is. Each bot
    # calls /v1/channels/telegram/<bot>/webhook, which names its workspace, with the secret
    # token given to setWebhook.
    telegram_bots: dict[Annotated[str, StringConstraints(pattern=TELEGRAM_BOT)], ChannelAccount] = (
        Field(default_factory=dict))
    telegram_secret_token: SecretStr | None = None
    # Telegram posts one update per request; each is one raw record.
    max_telegram_bytes: int = Field(default=256 * 1024, ge=1024, le=768 * 1024)

    @model_validator(mode="after")
    def _telegramall_or_nothing(self) -> Settings:
        all_or_nothing("Telegram", {"TELEGRAM_BOTS": bool(self.telegram_bots),
                                     "TELEGRAM_SECRET_TOKEN": self.telegram_secret_token is not None})
        if self.telegram_secret_token is not None:
            strong_secret(self.telegram_secret_token, "INGEST_TELEGRAM_SECRET_TOKEN")
            if not secret_token_allowed(self.telegram_secret_token.get_secret_value()):
                raise ValueError("INGEST_TELEGRAM_SECRET_TOKEN may hold only A-Z, a-z, 0-9, _ and - "
                                 "(at most 256), as Telegram's setWebhook takes it")
        return self

    @property
    def telegram(self) -> TelegramChannel | None:
        if self.telegram_secret_token is None:
            return None
        return TelegramChannel(self.telegram_secret_token.get_secret_value().encode(),
                               dict(self.telegram_bots), self.max_telegram_bytes)

    # SMS through Twilio: on when all three are set, off (404) when none is. Twilio signs the
    # URL it calls, so that public URL (not the one behind a proxy) must be given; each number
    # of the account (E.164) maps to a workspace.
    sms_numbers: dict[Annotated[str, StringConstraints(pattern=E164)], ChannelAccount] = (
        Field(default_factory=dict))
    sms_auth_token: SecretStr | None = None
    sms_public_url: str | None = Field(default=None, max_length=2048)
    max_sms_bytes: int = Field(default=64 * 1024, ge=1024, le=768 * 1024)

    @model_validator(mode="after")
    def _smsall_or_nothing(self) -> Settings:
        all_or_nothing("SMS", {"SMS_NUMBERS": bool(self.sms_numbers),
                                "SMS_AUTH_TOKEN": self.sms_auth_token is not None,
                                "SMS_PUBLIC_URL": self.sms_public_url is not None})
        if self.sms_auth_token is not None:
            strong_secret(self.sms_auth_token, "INGEST_SMS_AUTH_TOKEN")
        schemes = ("https://",) if self.infra.environment == "prod" else ("https://", "http://")
        if self.sms_public_url is not None and not self.sms_public_url.startswith(schemes):
            raise ValueError("INGEST_SMS_PUBLIC_URL must be the full URL Twilio calls "
                             f"({' or '.join(schemes)}...)")
        return self

    @property
    def sms(self) -> SmsChannel | None:
        if self.sms_auth_token is None or self.sms_public_url is None:
            return None
        return SmsChannel(self.sms_auth_token.get_secret_value().encode(), self.sms_public_url,
                          dict(self.sms_numbers), self.max_sms_bytes)

    # Commerce webhooks: on when a store is named, off (404) when none is. Each store posts
    # to /v1/channels/commerce/<store>/webhook, signed with its own secret.
    commerce_stores: dict[Annotated[str, StringConstraints(pattern=COMMERCE_STORE)], CommerceStore] = (
        Field(default_factory=dict))
    # An event is one raw record, so it must fit a Kafka request with its headers.
    max_commerce_bytes: int = Field(default=768 * 1024, ge=1024, le=768 * 1024)

    @property
    def commerce(self) -> CommerceChannel | None:
        if not self.commerce_stores:
            return None
        return CommerceChannel(dict(self.commerce_stores), self.max_commerce_bytes)

    # Web chat: on when INGEST_CHAT_WIDGETS names a widget (then INGEST_CHAT_SECRET is
    # required); each public widget key says which workspace its visitors write into and which
    # sites may embed it. Rates are per minute, counted by each replica on its own.
    chat_widgets: dict[Annotated[str, StringConstraints(pattern=WIDGET_KEY)], ChatWidget] = (
        Field(default_factory=dict))
    chat_secret: SecretStr | None = None
    chat_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300, le=365 * 24 * 3600)
    chat_max_message_bytes: int = Field(default=4096, ge=256, le=65536)
    chat_sessions_per_minute: int = Field(default=10, ge=1)  # per client IP
    chat_messages_per_minute: int = Field(default=30, ge=1)  # per visitor
    chat_requests_per_minute: int = Field(default=300, ge=1)  # per client IP: sockets and REST calls
    # How often an open socket or long poll looks for what another replica wrote.
    chat_poll_seconds: float = Field(default=1.0, ge=0.1, le=10)

    @model_validator(mode="after")
    def _chat_secret_with_widgets(self) -> Settings:
        if self.chat_widgets and self.chat_secret is None:
            raise ValueError("INGEST_CHAT_WIDGETS needs INGEST_CHAT_SECRET (signs visitor tokens)")
        if self.chat_secret is not None:
            strong_secret(self.chat_secret, "INGEST_CHAT_SECRET")
        if RESERVED_WIDGET_KEYS & self.chat_widgets.keys():
            raise ValueError(f"a chat widget key may not be one of {sorted(RESERVED_WIDGET_KEYS)}")
        return self

    @property
    def chat(self) -> ChatConfig:
        return ChatConfig(
            widgets=dict(self.chat_widgets),
            secret=self.chat_secret.get_secret_value() if self.chat_secret else "",
            token_ttl_seconds=self.chat_token_ttl_seconds,
            max_message_bytes=self.chat_max_message_bytes,
            poll_seconds=self.chat_poll_seconds,
            limits=ChatLimits(self.chat_sessions_per_minute, self.chat_messages_per_minute,
                              self.chat_requests_per_minute),
            allow_loopback_origins=self.infra.environment != "prod",
        )

    # Outbound delivery (crm.outbound.v1). Each channel is on when its settings are given; a
    # request for a channel that is off, or from a workspace without a sender on it, fails for
    # good. Transient failures are retried with backoff for at most this long, then fail.
    outbound_give_up_after_seconds: float = Field(default=6 * 3600, gt=0)
    # Email, through one SMTP relay. TLS: none, starttls (required), tls (implicit, port 465).
    smtp_relay_host: str | None = None
    smtp_relay_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: TlsMode = "starttls"
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # The From of a request that names none: its workspace's, else the default.
    email_from: dict[str, str] = Field(default_factory=dict)  # workspace -> "Name <addr>"
    email_from_default: str = ""
    # The HTTP providers, at their real APIs unless told otherwise; senders per workspace.
    provider_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    graph_api_url: str = "https://graph.facebook.com"  # WhatsApp, Messenger, Instagram
    graph_api_version: str = Field(default="v23.0", pattern=r"^v\d+\.\d+$")
    whatsapp_send: dict[str, WhatsAppSender] = Field(default_factory=dict)
    messenger_send: dict[str, PageSender] = Field(default_factory=dict)
    instagram_send: dict[str, PageSender] = Field(default_factory=dict)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_send: dict[str, TelegramBot] = Field(default_factory=dict)
    twilio_api_url: str = "https://api.twilio.com"  # SMS, in Twilio's Messages API format
    sms_send: dict[str, TwilioSender] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _outbound_checks(self) -> Settings:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("INGEST_SMTP_USERNAME and INGEST_SMTP_PASSWORD go together")
        senders = [(f"INGEST_EMAIL_FROM ({w})", v) for w, v in self.email_from.items()]
        if self.email_from_default:
            senders.append(("INGEST_EMAIL_FROM_DEFAULT", self.email_from_default))
        for name, value in senders:
            try:
                mailbox(value)
            except ValueError:
                raise ValueError(f"{name} must be one address, as 'Name <local@domain>'") from None
        # Tokens travel with every call: plain HTTP only outside production (a local stand-in).
        schemes = ("https",) if self.infra.environment == "prod" else ("https", "http")
        for name, url in (("INGEST_GRAPH_API_URL", self.graph_api_url),
                          ("INGEST_TELEGRAM_API_URL", self.telegram_api_url),
                          ("INGEST_TWILIO_API_URL", self.twilio_api_url)):
            if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
                raise ValueError(f"{name} must be an {' or '.join(schemes)} URL")
        return self

    # Email in: SMTP, IMAP, signed webhook
    # The SMTP listener is on when INGEST_SMTP_INBOUND_ADDRESSES maps an address
    # ("support@acme.example") or a whole domain ("@help.acme.example") to a workspace; RCPT
    # to anything else is a 550. It sits behind the MTA: no AUTH and no TLS of its own.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    smtp_inbound_addresses: dict[
        Annotated[str, StringConstraints(to_lower=True, pattern=r"^[^@\s]{0,64}@[^@\s]{1,253}$")],
        Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(default_factory=dict)
    smtp_max_bytes: int | None = Field(default=None, ge=1024)  # None: INGEST_MAX_EMAIL_BYTES
    smtp_rate_per_second: float = Field(default=10.0, gt=0)  # messages per workspace and replica
    smtp_burst: int = Field(default=100, ge=1)
    # IMAP mailboxes, one poller each; their sync state is kept in MongoDB (mailbox_state).
    imap_mailboxes: list[ImapMailbox] = Field(default_factory=list)
    # Senders of the signed inbound-parse webhook, by the source name in its path.
    email_sources: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")],
                        EmailSource] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _email_in_checks(self) -> Settings:
        if self.smtp_inbound_addresses and self.smtp_port in (self.http_port, self.grpc_port):
            raise ValueError("INGEST_SMTP_PORT must differ from the HTTP and gRPC ports")
        keys = [mailbox.key for mailbox in self.imap_mailboxes]
        if len(set(keys)) != len(keys):
            raise ValueError("INGEST_IMAP_MAILBOXES names the same mailbox twice")
        if self.infra.environment == "prod":
            for mailbox in self.imap_mailboxes:
                if mailbox.tls == "none" and not mailbox.loopback:
                    raise ValueError("an INGEST_IMAP_MAILBOXES entry with tls none would send its "
                                     "password in clear: use tls or starttls")
        return self

    @property
    def smtp_limit(self) -> int:
        return self.smtp_max_bytes or self.max_email_bytes
