"""Typed settings: one infrastructure block shared by every service, one block per service.

Infrastructure settings are read from ``CRM_*`` variables (one place to point every service
at real clusters); a service's own settings from ``<SERVICE>_*``. Both fail fast: a missing
or well-known secret stops the process at start, not at the first request.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "dev", "test", "jwt-secret"}


def strong_secret(value: SecretStr, name: str, min_length: int = 32) -> SecretStr:
    """``value`` when it can be a random secret; a ValueError naming the variable otherwise.
    For settings validators, so that a weak or well-known secret stops the process at start."""
    raw = value.get_secret_value()
    if raw.lower() in _WEAK_SECRETS or len(raw) < min_length:
        raise ValueError(f"{name} must be a random value of at least {min_length} characters")
    return value


class ApiKeyEntry(BaseModel):
    """An integration's API key, stored only as the SHA-256 hex digest of the key."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    workspace_id: str
    scopes: list[str]


class InfraSettings(BaseSettings):
    """Where the shared infrastructure is, and the secrets every service shares."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    environment: Literal["dev", "test", "prod"] = "dev"
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # On for real Kafka; tansu (the local broker) has no idempotent producer.
    kafka_enable_idempotence: bool = False
    # How long the broker may hold a fetch that has no new records. tansu answers a waiting
    # fetch only when it expires, so this bounds the latency of every hop at low load.
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=1, le=5000)
    # The most records one fetch hands the consumer, across its partitions. Each partition's
    # share is handled as one batch, the partitions at once: larger fetches keep more
    # partitions busy while one waits on a database or a peer.
    kafka_max_poll_records: int = Field(default=1000, ge=1, le=10000)
    # How the services connect to Kafka: PLAINTEXT for the local broker; SASL_SSL with a
    # SCRAM user (Strimzi's KafkaUser, its password from the Secret of the same name) and the
    # cluster CA on a Kubernetes cluster. crmkit.kafka.connection turns these into the clients'.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # PEM file of the CA that signed the brokers' certificates (SSL and SASL_SSL); the system's
    # trusted CAs when unset.
    kafka_ssl_cafile: str | None = None
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    mongo_uri: str = "mongodb://127.0.0.1:27117/?replicaSet=secantus"
    # Every database name starts with this, so that a test run can use its own.
    database_prefix: str = "crm_"
    # Every consumer group name starts with this: deployments sharing a cluster stay apart.
    consumer_group_prefix: str = "crm."
    # HS256 key for local users' tokens and for the short-lived tokens services mint
    # for each other. Required: there is no default.
    jwt_secret: SecretStr
    # RS256/ES256 user tokens from an identity provider are verified against this JWKS.
    jwt_jwks_url: str | None = None
    jwt_issuer: str = "crm"
    jwt_audience: str = "crm"
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    # "otlp" uses the standard OTEL_EXPORTER_OTLP_* variables for the endpoint.
    otel_exporter: Literal["otlp", "console", "none"] = "none"
    log_level: str = "INFO"

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        return strong_secret(value, "CRM_JWT_SECRET")

    @model_validator(mode="after")
    def _kafka_credentials(self) -> InfraSettings:
        password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else ""
        if self.kafka_security_protocol.startswith("SASL_") and not (self.kafka_sasl_username and password):
            raise ValueError(f"CRM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                             "CRM_KAFKA_SASL_USERNAME and CRM_KAFKA_SASL_PASSWORD")
        return self

    def postgres_dsn_for(self, database: str) -> str:
        parts = urlsplit(self.postgres_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


class ServiceSettings(BaseSettings):
    """Base of every service's settings; subclasses set ``env_prefix`` and ``service_name``."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50050
    # How long a stopping service waits for in-flight consumers and requests.
    shutdown_grace_seconds: float = 10.0
    infra: InfraSettings = Field(default_factory=lambda: InfraSettings())

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServiceSettings:
        if self.http_port == self.grpc_port:
            raise ValueError("http_port and grpc_port must differ")
        return self

    @property
    def database_name(self) -> str:
        return f"{self.infra.database_prefix}{self.service_name}"

    @property
    def consumer_group(self) -> str:
        return f"{self.infra.consumer_group_prefix}{self.service_name}"
