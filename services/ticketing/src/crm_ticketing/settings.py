from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETING_", extra="ignore")

    service_name: str = "ticketing"
    http_port: int = 8003
    grpc_port: int = 50053
    # The public knowledge base: requests per client IP, per replica (a token bucket).
    public_kb_rate_per_second: float = Field(default=5.0, gt=0)
    public_kb_burst: int = Field(default=60, ge=1)
    # How long browsers and CDNs may keep a public knowledge base answer.
    public_kb_max_age_seconds: int = Field(default=60, ge=0)
