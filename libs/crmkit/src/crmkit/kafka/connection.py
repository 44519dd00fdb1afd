"""How every Kafka client of a process connects: the one place that turns the infrastructure
settings (``CRM_KAFKA_*``) into aiokafka's connection arguments, for the producer and every
consumer alike."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from crmkit.settings import InfraSettings


def connection_options(settings: InfraSettings) -> dict[str, Any]:
    """Bootstrap servers, security protocol, SASL credentials and TLS context."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return options
