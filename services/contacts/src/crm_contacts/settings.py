from typing import Annotated

from pydantic import Field, StringConstraints, field_validator
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings

# A personal-data source's name is its file in the export archive: <name>.json.
SourceName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTACTS_", extra="ignore")

    service_name: str = "contacts"
    http_port: int = 8001
    grpc_port: int = 50051
    # Reads national phone numbers (no +country code) in writes and imports; ISO 3166 alpha-2.
    phone_region: str | None = None
    # The services that hold personal data and must confirm an erasure.
    erasure_services: list[str] = ["ticketing", "pipeline", "campaigns", "ingest", "partners"]
    # The services a person's data export asks for their part (crm.common.v1.PersonalDataService):
    # name -> gRPC target, e.g. {"ticketing": "127.0.0.1:50053"}; and how long it waits for them.
    personal_data_sources: dict[SourceName, Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=dict)
    personal_data_deadline_seconds: float = Field(default=30.0, gt=0, le=300)
    # CSV imports: the largest file accepted, rows applied per transaction, and how often an idle
    # worker looks for jobs queued by other replicas.
    import_max_bytes: int = 200 * 1024 * 1024
    import_batch_size: int = 5000
    import_poll_seconds: float = 1.0

    @field_validator("personal_data_sources")
    @classmethod
    def _not_contacts_own_files(cls, sources: dict[str, str]) -> dict[str, str]:
        taken = sorted({"contacts", "manifest"} & sources.keys())
        if taken:
            raise ValueError(f"{', '.join(taken)}: names of the export's own files, not of a source")
        return sources
