"""The web chat's configuration: which widget keys exist, whose workspace each one writes
into, which sites may embed it, and the secret with which a site vouches for its people."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field, SecretStr, field_validator

from crm_ingest.domain.chat import normalise_origin
from crmkit.settings import strong_secret


class ChatWidget(BaseModel):
    """One website's chat widget (INGEST_CHAT_WIDGETS maps its public key to this)."""

    workspace_id: str = Field(min_length=1, max_length=128)
    # Pages of these origins (scheme://host[:port]) may open the chat; loopback pages too,
    # outside production.
    allowed_origins: list[str] = Field(default_factory=list, max_length=100)
    # Identity verification: the website's backend signs a logged-in person's email with this
    # (sign_visitor_email), and a visitor whose email is signed joins the contact owning it.
    # None: the widget takes no signature, and every visitor is anonymous.
    identity_secret: SecretStr | None = None

    @field_validator("identity_secret")
    @classmethod
    def _strong_identity_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else strong_secret(value, "a chat widget's identity_secret")

    def identity_key(self) -> str:
        """The identity secret, or "" for a widget without one."""
        return self.identity_secret.get_secret_value() if self.identity_secret else ""

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        normalised = []
        for value in values:
            origin = normalise_origin(value)
            if origin is None:
                raise ValueError(f"{value!r} is not an origin (scheme://host[:port])")
            normalised.append(origin)
        return normalised


@dataclass(frozen=True)
class ChatLimits:
    """Rates, per minute, of the public chat endpoints."""

    sessions_per_ip: int
    messages_per_visitor: int
    requests_per_ip: int


@dataclass(frozen=True)
class ChatConfig:
    widgets: dict[str, ChatWidget]
    secret: str  # signs visitor tokens; set whenever there is a widget
    token_ttl_seconds: int
    max_message_bytes: int
    poll_seconds: float
    limits: ChatLimits
    allow_loopback_origins: bool  # outside production, pages served from loopback
