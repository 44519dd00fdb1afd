"""The Kafka connection settings (CRM_KAFKA_SECURITY_PROTOCOL, CRM_KAFKA_SASL_*) reach every
client crmkit makes, and a SASL setting without its credentials stops the process at start."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from crmkit.kafka import consumer as consumer_module
from crmkit.kafka import producer as producer_module
from crmkit.kafka.connection import connection_options
from crmkit.settings import InfraSettings

SECRET = "k" * 48


def settings(**kw: Any) -> InfraSettings:
    return InfraSettings(jwt_secret=SECRET, kafka_bootstrap_servers="broker:9093", **kw)


def test_plaintext_by_default_for_the_local_broker() -> None:
    assert connection_options(settings()) == {"bootstrap_servers": "broker:9093",
                                              "security_protocol": "PLAINTEXT"}


def test_scram_over_tls_carries_the_user_the_password_and_the_cluster_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(_ca_certificate())
    options = connection_options(settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="contacts",
                                          kafka_sasl_password="from-the-kafkauser-secret",
                                          kafka_ssl_cafile=str(ca)))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("contacts",
                                                                                 "from-the-kafkauser-secret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1  # the cluster CA from the file


@pytest.mark.parametrize("missing", [{"kafka_sasl_username": "contacts"}, {"kafka_sasl_password": "pw"},
                                     {"kafka_sasl_username": "contacts", "kafka_sasl_password": ""}])
def test_sasl_without_credentials_is_refused_at_start(missing: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="CRM_KAFKA_SASL_USERNAME and CRM_KAFKA_SASL_PASSWORD"):
        settings(kafka_security_protocol="SASL_PLAINTEXT", **missing)


def test_the_producer_is_made_with_them(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, Any] = {}
    monkeypatch.setattr(producer_module, "AIOKafkaProducer", lambda **kw: made.update(kw))
    producer_module.Producer(settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                                      kafka_sasl_password="p"), client_id="test")
    assert made["security_protocol"] == "SASL_PLAINTEXT"
    assert (made["sasl_plain_username"], made["sasl_plain_password"]) == ("u", "p")
    assert made["acks"] == "all"


def test_every_consumer_is_made_with_them(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, Any] = {}
    monkeypatch.setattr(consumer_module, "AIOKafkaConsumer", lambda **kw: made.update(kw))
    consumer_module.ConsumerRunner(
        settings=settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                          kafka_sasl_username="u", kafka_sasl_password="p"),
        group_id="crm.test", handlers={}, producer=None)  # type: ignore[arg-type]
    assert (made["security_protocol"], made["sasl_mechanism"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    assert made["group_id"] == "crm.test"


def _ca_certificate() -> bytes:
    """A self-signed CA certificate (PEM), as Strimzi's <cluster>-cluster-ca-cert holds one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)
