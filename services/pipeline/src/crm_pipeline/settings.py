from decimal import Decimal
from typing import Literal

from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    service_name: str = "pipeline"
    http_port: int = 8002
    grpc_port: int = 50052
    # Contacts' gRPC: a deal's contact, company and participants are checked there on write.
    contacts_grpc_target: str = "127.0.0.1:50051"
    # Forecasts: the workspace days (periods, won dates) are cut in this IANA time zone; a
    # snapshot of every workspace's forecast is taken once a week (or day; "off": never),
    # checked for every forecast_snapshot_check_seconds.
    forecast_time_zone: str = "UTC"
    forecast_snapshot_every: Literal["week", "day", "off"] = "week"
    forecast_snapshot_check_seconds: float = 300.0
    # Lead scoring: a score change is published when it moves at least this many points from
    # the score last published (or across a threshold of the model); every score is computed
    # again (decay) once it is older than lead_rescore_every_seconds, looked for every
    # lead_rescore_check_seconds; behaviour events older than lead_event_retention_days go.
    lead_score_min_change: Decimal = Decimal(1)
    lead_rescore_every_seconds: float = 3600.0
    lead_rescore_check_seconds: float = 30.0
    lead_event_retention_days: int = 730
    # Activities: open deals quiet for longer than their stage's rotting_days are looked for
    # every rotting_check_seconds (crm.pipeline.deal.rotting.v1, once per episode).
    rotting_check_seconds: float = 300.0
