from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTACTS_", extra="ignore")

    service_name: str = "contacts"
    http_port: int = 8001
    grpc_port: int = 50051
    # Reads national phone numbers (no +country code) in writes and imports; ISO 3166 alpha-2.
    phone_region: str | None = None
    # The services that hold personal data and must confirm an erasure.
    erasure_services: list[str] = ["ticketing", "pipeline", "campaigns", "ingest"]
    # CSV imports: the largest file accepted, rows applied per transaction, and how often an idle
    # worker looks for jobs queued by other replicas.
    import_max_bytes: int = 200 * 1024 * 1024
    import_batch_size: int = 5000
    import_poll_seconds: float = 1.0
