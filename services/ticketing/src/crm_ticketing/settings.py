from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings, strong_secret

# Signs survey links in dev and test only; prod refuses to start without its own secret.
_DEV_CSAT_SECRET = "dev-only-csat-secret-not-for-production-use"  # noqa: S105


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETING_", extra="ignore")

    service_name: str = "ticketing"
    http_port: int = 8003
    grpc_port: int = 50053
    # Contacts' gRPC: erasure confirmations, and contact fields for macros and routing.
    contacts_grpc_target: str = "127.0.0.1:50051"
    # The public knowledge base: requests per client IP, per replica (a token bucket).
    public_kb_rate_per_second: float = Field(default=5.0, gt=0)
    public_kb_burst: int = Field(default=60, ge=1)
    # How long browsers and CDNs may keep a public knowledge base answer.
    public_kb_max_age_seconds: int = Field(default=60, ge=0)
    # CSAT survey links: signed (HMAC-SHA256) with this secret, and pointing at this public
    # base URL (the ticketing API as the requester's browser reaches it). Required in prod;
    # dev and test fall back to a fixed development secret.
    csat_secret: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8003"
    # The public survey endpoints: requests per client IP, per replica (a token bucket).
    public_csat_rate_per_second: float = Field(default=1.0, gt=0)
    public_csat_burst: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _csat_secret(self) -> Settings:
        if self.csat_secret is None:
            if self.infra.environment == "prod":
                raise ValueError("TICKETING_CSAT_SECRET is required (signs CSAT survey links)")
        else:
            strong_secret(self.csat_secret, "TICKETING_CSAT_SECRET")
        return self

    @property
    def csat_signing_key(self) -> str:
        """The secret survey links are signed with (the development one outside prod)."""
        if self.csat_secret is not None:
            return self.csat_secret.get_secret_value()
        return _DEV_CSAT_SECRET
