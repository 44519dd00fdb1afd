from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERS_", extra="ignore")

    service_name: str = "partners"
    http_port: int = 8006
    # gRPC serves only crm.common.v1.PersonalDataService (a person's data export).
    grpc_port: int = 50056
    # Contacts' gRPC: erasures are confirmed there.
    contacts_grpc_target: str = "127.0.0.1:50051"
    # How long public events stay in the replay store (the pull API, webhook replays); the
    # public topics keep as long (crmkit.topics.RETENTION_DAYS).
    replay_retention_days: int = 30
    # SSRF protection: webhook URLs must be public https addresses. Local development and
    # tests deliver to receivers on this machine, so they allow loopback (never in prod).
    webhook_allow_loopback: bool = False
    webhook_timeout_seconds: float = 10.0
    # A delivery is retried with exponential backoff and jitter for this long, then dead.
    webhook_retry_hours: float = 72.0
    # The wait before a retry: full jitter up to base * 2**(attempt - 1), at most the cap.
    webhook_backoff_base_seconds: float = 5.0
    webhook_backoff_cap_seconds: float = 3600.0
    # Requests in flight: at most this many in all, and per subscription (endpoint).
    webhook_concurrency: int = 64
    webhook_per_endpoint: int = 4
    webhook_poll_seconds: float = 0.5
