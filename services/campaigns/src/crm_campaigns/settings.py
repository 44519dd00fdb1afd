from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings, strong_secret

# Signs tracking links in dev and test only; prod refuses to start without its own secret.
_DEV_TRACKING_SECRET = "dev-only-tracking-secret-not-for-production-use"  # noqa: S105


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CAMPAIGNS_", extra="ignore")

    service_name: str = "campaigns"
    http_port: int = 8004
    grpc_port: int = 50054
    # Contacts' gRPC: campaign audiences (segment members with consent), previews.
    contacts_grpc_target: str = "127.0.0.1:50051"
    # Tracking links (open pixel, click redirects, unsubscribe) are signed (HMAC-SHA256) with
    # this secret and point at this public base URL. Required in prod; dev and test fall back
    # to a fixed development secret.
    tracking_secret: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8004"
    # The sender: how often it looks for due campaigns, and recipients per batch (a pause or
    # cancel takes effect between batches).
    sender_poll_seconds: float = Field(default=1.0, gt=0)
    sender_batch_size: int = Field(default=1000, ge=1, le=5000)
    # The journey runner: how often it looks for runs due to move on.
    journey_poll_seconds: float = Field(default=1.0, gt=0)

    # Tracking (open pixel, click redirects, unsubscribe): opens within this many seconds of
    # the send are taken for prefetches and flagged as bots; the public endpoints allow this
    # many requests per client IP, per replica (a token bucket).
    bot_open_seconds: float = 2.0
    tracking_rate_per_second: float = 20.0
    tracking_burst: int = 200
    # A deal won or an order within this many days after a click counts for that click's campaign.
    conversion_window_days: int = 7

    @model_validator(mode="after")
    def _tracking_secret(self) -> Settings:
        if self.tracking_secret is None:
            if self.infra.environment == "prod":
                raise ValueError("CAMPAIGNS_TRACKING_SECRET is required (signs tracking links)")
        else:
            strong_secret(self.tracking_secret, "CAMPAIGNS_TRACKING_SECRET")
        return self

    @property
    def tracking_key(self) -> str:
        """The secret tracking links are signed with (the development one outside prod)."""
        if self.tracking_secret is not None:
            return self.tracking_secret.get_secret_value()
        return _DEV_TRACKING_SECRET
