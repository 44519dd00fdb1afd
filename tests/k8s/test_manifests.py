"""The Kubernetes deployment (deploy/k8s): every overlay renders and validates offline, meets the
platform's rules, and the checker that `make k8s-check` runs fails on a broken manifest."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crmkit import topics

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl renders the overlays (see deploy/k8s/README.md)")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"crm_k8s_{name}", K8S / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check = _load("check")
OVERLAYS = ["dev", "prod"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: check.render(K8S / "overlays" / name) for name in OVERLAYS}


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def test_the_overlays_are_dev_and_prod() -> None:
    assert [path.name for path in check.overlays()] == OVERLAYS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_validates(rendered: dict[str, list[dict[str, Any]]],
                                               overlay: str) -> None:
    assert check.check_objects(rendered[overlay], check.crd_schemas()) == []


def test_the_generated_resources_are_up_to_date() -> None:
    assert check.generate.stale() == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened_and_drains(rendered: dict[str, list[dict[str, Any]]],
                                               overlay: str) -> None:
    deployments = of_kind(rendered[overlay], "Deployment")
    assert set(deployments) == set(check.generate.SERVICES)
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["seccompProfile"]["type"] == "RuntimeDefault"
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["lifecycle"]["preStop"]
        assert pod["terminationGracePeriodSeconds"] >= 5 + 3 * check.DEFAULT_GRACE_SECONDS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_manifest_carries_a_secret_value(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    assert [obj for obj in rendered[overlay] if obj["kind"] == "Secret"] == []
    assert [error for obj in rendered[overlay] for error in check.secret_errors(obj)] == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_has_a_kafka_topic(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    kafka_topics = of_kind(rendered[overlay], "KafkaTopic")
    assert set(kafka_topics) == set(topics.all_topics())
    for name, partitions in topics.all_topics().items():
        assert kafka_topics[name]["spec"]["partitions"] == partitions
    for name, days in topics.RETENTION_DAYS.items():
        assert kafka_topics[name]["spec"]["config"]["retention.ms"] == days * 86_400_000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_reaches_kafka_as_its_own_scram_user(rendered: dict[str, list[dict[str, Any]]],
                                                           overlay: str) -> None:
    """Over TLS on the SCRAM listener, with its own KafkaUser's password and the cluster CA,
    so that its ACLs (one group, the topics it reads and writes) are what it may do."""
    objects = rendered[overlay]
    (kafka,) = of_kind(objects, "Kafka").values()
    scram_ports = {listener["port"] for listener in kafka["spec"]["kafka"]["listeners"]
                   if listener.get("tls") and listener.get("authentication") == {"type": "scram-sha-512"}}
    platform = next(cm["data"] for name, cm in of_kind(objects, "ConfigMap").items()
                    if name.startswith("crm-platform"))
    assert platform["CRM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert platform["CRM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert int(platform["CRM_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]) in scram_ports
    users = of_kind(objects, "KafkaUser")
    deployments = of_kind(objects, "Deployment")
    for service in check.generate.SERVICES:
        pod = deployments[service]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {item["name"]: item for item in container["env"]}
        assert env["CRM_KAFKA_SASL_USERNAME"]["value"] == service
        assert users[service]["spec"]["authentication"]["type"] == "scram-sha-512"
        password = env["CRM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": service, "key": "password"}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert platform["CRM_KAFKA_SSL_CAFILE"] == f"{mounts['kafka-ca']}/ca.crt"
        assert volumes["kafka-ca"]["secret"]["secretName"] == f"{kafka['metadata']['name']}-cluster-ca-cert"


def test_every_service_has_its_own_database_with_backups(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["prod"]
    clusters = of_kind(objects, "Cluster")
    stores, backups = of_kind(objects, "ObjectStore"), of_kind(objects, "ScheduledBackup")
    (mongo,) = of_kind(objects, "MongoDBCommunity").values()
    mongo_users = {user["name"] for user in mongo["spec"]["users"]}
    for service in check.generate.SERVICES:
        if f"{service}-db" in clusters:
            assert clusters[f"{service}-db"]["spec"]["bootstrap"]["initdb"]["database"] == f"crm_{service}"
            (archiver,) = clusters[f"{service}-db"]["spec"]["plugins"]
            store = stores[archiver["parameters"]["barmanObjectName"]]
            assert store["spec"]["configuration"]["destinationPath"] == f"s3://crm-backups/{service}"
            assert backups[f"{service}-db-daily"]["spec"]["cluster"]["name"] == f"{service}-db"
        else:
            assert service in mongo_users, f"{service} has neither a CloudNativePG Cluster nor a MongoDB user"
    assert check.coverage_errors(objects) == []


def test_prod_scales_every_consumer_on_its_lag(rendered: dict[str, list[dict[str, Any]]]) -> None:
    scaled = of_kind(rendered["prod"], "ScaledObject")
    assert of_kind(rendered["prod"], "HorizontalPodAutoscaler") == {}
    for service, wiring in check.generate.SERVICES.items():
        lag = {t["metadata"]["topic"]: t["metadata"]["consumerGroup"]
               for t in scaled[service]["spec"]["triggers"] if t["type"] == "kafka"}
        assert lag == dict.fromkeys(wiring.reads, f"crm.{service}")


# -- the checker fails on a broken tree (a copy of deploy/k8s) ------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_checker_passes_an_untouched_copy(tree: Path) -> None:
    assert check.check(tree) == []


def test_the_checker_fails_a_writable_root_filesystem(tree: Path) -> None:
    edit(tree / "base" / "ingest" / "deployment.yaml", "readOnlyRootFilesystem: true",
         "readOnlyRootFilesystem: false")
    errors = check.check(tree)
    assert any("Deployment/ingest" in e and "readOnlyRootFilesystem" in e for e in errors)
    assert {e.split(":")[0] for e in errors} == {"overlays/dev", "overlays/prod"}


def test_the_checker_fails_a_secret_in_a_manifest(tree: Path) -> None:
    (tree / "base" / "platform" / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: crm-shared\nstringData:\n  CRM_JWT_SECRET: x\n")
    edit(tree / "base" / "platform" / "kustomization.yaml", "configMapGenerator:",
         "resources:\n  - secret.yaml\nconfigMapGenerator:")
    assert any("Secret/crm-shared: a Secret with data" in e for e in check.check(tree))


def test_the_checker_fails_an_unknown_field_and_an_unknown_kind(tree: Path) -> None:
    edit(tree / "base" / "kafka" / "kafka.yaml", "    rack:", "    racks:")
    (tree / "base" / "kafka" / "widget.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    edit(tree / "base" / "kafka" / "kustomization.yaml", "  - users.yaml", "  - users.yaml\n  - widget.yaml")
    errors = check.check(tree)
    assert any("Kafka/crm: spec.kafka: Additional properties are not allowed ('racks'" in e for e in errors)
    assert any("Widget/w: unknown kind example.com/v1 Widget" in e for e in errors)


def test_the_checker_fails_a_hand_edited_topic_file(tree: Path) -> None:
    edit(tree / "base" / "kafka" / "topics.yaml", "partitions: 6", "partitions: 3")
    errors = check.check(tree)
    assert any(e.startswith("base/kafka/topics.yaml differs from what generate.py makes") for e in errors)
    assert any("partitions, crmkit.topics says 6" in e for e in errors)


def test_a_published_crd_is_stored_without_descriptions_and_checked_strictly(tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text("""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          description: A widget.
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1, description: How big.}
                labels: {type: object, x-kubernetes-preserve-unknown-fields: true}
""")
    done = subprocess.run([sys.executable, str(K8S / "schemas" / "import_crd.py"), str(crd), "--out",
                           str(tmp_path / "schemas")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    stored = (tmp_path / "schemas" / "example.com" / "Widget_v1.json").read_text()
    assert "description" not in stored
    schemas = check.crd_schemas(tmp_path)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 2, "labels": {"anything": "goes"}}}
    assert check.schema_errors(widget, schemas) == []
    widget["spec"] = {"size": 0, "colour": "red"}
    assert len(check.schema_errors(widget, schemas)) == 2


def test_without_kubectl_the_checker_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(check.shutil, "which", lambda _: None)
    assert check.main() == 2
    assert "kubectl is needed" in capsys.readouterr().err


def test_the_kafka_users_partners_generates_validate_against_strimzis_schema() -> None:
    """What `python -m crm_partners.kafka_users` writes into components/partner-users."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from crm_partners.domain.accounts import Partner, Subscription
    from crm_partners.domain.kafka_users import kafka_user

    now = datetime.now(UTC)
    partner = Partner(uuid4(), "acme", "Acme", "", "active", 1, now, now)
    subscription = Subscription(uuid4(), "acme", partner.id, "won deals",
                                ("crm.pipeline.deal.won.v1", "crm.contacts.contact.erased.v1"), "kafka")
    user = kafka_user(partner, [subscription])
    assert check.schema_errors(user, check.crd_schemas()) == []
    assert {acl["resource"]["name"] for acl in user["spec"]["authorization"]["acls"]} == {
        "crm.public.pipeline.v1", "crm.public.contacts.v1", f"partner.{partner.id}."}
