from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import SettingsConfigDict

from crm_ingest.domain.whatsapp import PHONE_NUMBER_ID
from crmkit.settings import ServiceSettings, strong_secret


class WhatsAppAccount(BaseModel):
    """Where the messages to one business phone number go."""

    workspace_id: str = Field(min_length=1, max_length=128)


@dataclass(frozen=True)
class WhatsAppChannel:
    """The WhatsApp channel's settings, there only when it is configured."""

    app_secret: bytes
    verify_token: str
    workspaces: dict[str, str]  # phone_number_id -> workspace id
    max_bytes: int


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
    # WhatsApp Cloud API webhooks: on when all three are set, off (404) when none is. Meta
    # calls one URL per app, so each business phone number id maps to a workspace.
    whatsapp_accounts: dict[Annotated[str, StringConstraints(pattern=PHONE_NUMBER_ID)], WhatsAppAccount] = (
        Field(default_factory=dict))
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    # Meta sends deliveries of up to 3 MB; each message travels on as its own raw record.
    max_whatsapp_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _whatsapp_all_or_nothing(self) -> Settings:
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
    def whatsapp(self) -> WhatsAppChannel | None:
        if self.whatsapp_app_secret is None or self.whatsapp_verify_token is None:
            return None
        return WhatsAppChannel(
            app_secret=self.whatsapp_app_secret.get_secret_value().encode(),
            verify_token=self.whatsapp_verify_token.get_secret_value(),
            workspaces={number: account.workspace_id for number, account in self.whatsapp_accounts.items()},
            max_bytes=self.max_whatsapp_bytes,
        )
