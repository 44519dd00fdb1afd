from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


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
