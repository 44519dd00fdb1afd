"""Render every overlay with ``kubectl kustomize`` and check every object offline:

- built-in kinds against the Kubernetes API schema of ``K8S_VERSION`` (kubernetes-validate,
  strict: an unknown field is an error);
- custom resources against the CRD schemas kept in ``schemas/<group>/<kind>_<version>.json``,
  strict the same way; a kind with neither schema is an error;
- the platform's own rules: every container hardened (non-root, read-only root filesystem, no
  capabilities, seccomp RuntimeDefault, requests and limits), readiness separate from
  liveness, a grace period that covers the drain; no secret value in any manifest; a
  KafkaTopic for every topic of ``crmkit.topics``; a database for every service;
- the files ``generate.py`` writes are up to date.

``python deploy/k8s/check.py`` (what ``make k8s-check`` runs) prints each problem and exits 1
when there is one.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from crmkit import topics

HERE = Path(__file__).resolve().parent
# The oldest Kubernetes the manifests are meant for; kubernetes-validate checks against it.
K8S_VERSION = "1.32.0"
# crmkit.settings.ServiceSettings.shutdown_grace_seconds when a service's config does not set it.
DEFAULT_GRACE_SECONDS = 10.0
# A stopping service drains in three steps of at most its grace each: HTTP requests, the
# consumer's batch, gRPC calls (crmkit.web.serve, crmkit.runtime.Runtime).
DRAIN_STEPS = 3
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|API_KEYS)$")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

KUBECTL_MISSING = """kubectl is needed to render the overlays (`kubectl kustomize`, offline).
Install a kubectl of version 1.27 or later (its kustomize must know components):
  - from the Kubernetes project's own package repository for your distribution, or
  - as the single binary release for your platform, put on the PATH.
Debian's own kubernetes-client package (1.20) is too old: its kustomize cannot render components."""


def _generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crm_k8s_generate", HERE / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


generate = _generate()


class KubectlMissing(Exception):
    """No kubectl on the PATH; the message says how to get one."""


def overlays(root: Path = HERE) -> list[Path]:
    return sorted(path.parent for path in (root / "overlays").glob("*/kustomization.yaml"))


def render(overlay: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` makes of an overlay; a RuntimeError when it cannot."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise KubectlMissing(KUBECTL_MISSING)
    done = subprocess.run([kubectl, "kustomize", str(overlay)],  # noqa: S603
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# -- schemas ----------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD's structural schema as a JSON schema that rejects unknown fields, as the API server
    does with field validation ``Strict``: every object that lists its properties and does not
    preserve unknown fields gets ``additionalProperties: false``; OpenAPI's ``nullable`` and
    ``x-kubernetes-int-or-string`` become their JSON-schema forms."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def crd_schemas(root: Path = HERE) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, kind, version) -> strict schema, from ``schemas/<group>/<kind>_<version>.json``."""
    found = {}
    for path in sorted((root / "schemas").glob("*/*.json")):
        kind, _, version = path.stem.rpartition("_")
        schema = strict(json.loads(path.read_text()))
        # Every object has these, whether its CRD lists them or not.
        schema.setdefault("properties", {}).update(
            {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
        found[(path.parent.name, kind, version)] = schema
    return found


def schema_errors(obj: dict[str, Any], schemas: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    kind = str(obj.get("kind", ""))
    schema = schemas.get((group, kind, version))
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        return [f"{_path(error.absolute_path)}: {error.message}"
                for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except SchemaNotFoundError:
        return [f"unknown kind {obj.get('apiVersion')} {kind}: neither Kubernetes {K8S_VERSION} nor a "
                f"CRD schema in deploy/k8s/schemas"]
    except jsonschema.ValidationError as error:
        return [f"{_path(error.path)}: {error.message}"]
    return []


def _path(parts: Any) -> str:
    return ".".join(str(part) for part in parts) or "(object)"


# -- the platform's rules ----------------------------------------------------------------------


def _containers(pod: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    for container in pod.get("initContainers") or []:
        yield container, False
    for container in pod.get("containers") or []:
        yield container, True


def _prestop_seconds(container: dict[str, Any]) -> float | None:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"].get("seconds", 0))
    command = (pre_stop.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] == "sleep":
        return float(command[1])
    return 0.0 if pre_stop else None


def _grace_seconds(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> float:
    for source in container.get("envFrom") or []:
        name = (source.get("configMapRef") or {}).get("name")
        for key, value in config_maps.get(name, {}).items():
            if key.endswith("_SHUTDOWN_GRACE_SECONDS"):
                return float(value)
    return DEFAULT_GRACE_SECONDS


def workload_errors(obj: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> list[str]:
    """Item 2 of the deployment rules, for one workload's every container."""
    pod = obj["spec"]["template"]["spec"]
    pod_security = pod.get("securityContext") or {}
    errors = []
    for container, main in _containers(pod):
        where = f"container {container.get('name')}"
        security = container.get("securityContext") or {}
        if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
            errors.append(f"{where}: runAsNonRoot is not true")
        if security.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem is not true")
        if security.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{where}: capabilities.drop does not hold ALL")
        seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            errors.append(f"{where}: seccompProfile is not RuntimeDefault")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(bound) or {})
            if missing:
                errors.append(f"{where}: no {bound} for {', '.join(sorted(missing))}")
        if not main:
            continue
        readiness, liveness = container.get("readinessProbe"), container.get("livenessProbe")
        if not readiness or not liveness:
            errors.append(f"{where}: needs both a readinessProbe and a livenessProbe")
        elif readiness == liveness:
            errors.append(f"{where}: readiness and liveness are the same probe")
        else:
            if (readiness.get("httpGet") or {}).get("path") != "/readyz":
                errors.append(f"{where}: readinessProbe is not GET /readyz")
            if (liveness.get("httpGet") or {}).get("path") != "/healthz":
                errors.append(f"{where}: livenessProbe is not GET /healthz (it must not check a database)")
        pre_stop = _prestop_seconds(container)
        if pre_stop is None:
            errors.append(f"{where}: no preStop hook (endpoints must go before SIGTERM)")
            continue
        needed = pre_stop + DRAIN_STEPS * _grace_seconds(container, config_maps)
        granted = pod.get("terminationGracePeriodSeconds", 30)
        if granted < needed:
            errors.append(f"{where}: terminationGracePeriodSeconds {granted} is shorter than preStop + "
                          f"{DRAIN_STEPS} x the shutdown grace ({needed:g} s)")
    return errors


def secret_errors(obj: dict[str, Any]) -> list[str]:
    """Secrets are referenced, never written: no Secret with data, no secret-looking literal."""
    errors = []
    if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
        errors.append("a Secret with data: reference a Secret made out of band or by an ExternalSecret")
    if obj.get("kind") == "ConfigMap":
        for key, value in (obj.get("data") or {}).items():
            if SECRET_NAME.search(key) or CREDENTIALS_IN_URL.search(str(value)):
                errors.append(f"ConfigMap key {key} holds a secret: use a Secret")
    if obj.get("kind") in WORKLOADS:
        for container, _ in _containers(obj["spec"]["template"]["spec"]):
            for env in container.get("env") or []:
                value = env.get("value")
                literal = value is not None and (SECRET_NAME.search(env["name"])
                                                 or CREDENTIALS_IN_URL.search(value))
                if literal:
                    errors.append(f"container {container.get('name')}: {env['name']} is a literal secret")
    return errors


def coverage_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Every topic has its KafkaTopic; every service its Deployment and its own database; every
    PostgreSQL cluster archives its WAL and has scheduled base backups."""
    errors = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    kafka_topics = by_kind.get("KafkaTopic", {})
    for name, partitions in topics.all_topics().items():
        topic = kafka_topics.get(name)
        if topic is None:
            errors.append(f"topic {name} has no KafkaTopic")
        elif topic["spec"].get("partitions") != partitions:
            errors.append(f"KafkaTopic {name} has {topic['spec'].get('partitions')} partitions, "
                          f"crmkit.topics says {partitions}")
        elif "retention.ms" not in (topic["spec"].get("config") or {}) or "replicas" not in topic["spec"]:
            errors.append(f"KafkaTopic {name} does not say its replicas and retention")
    clusters = by_kind.get("Cluster", {})
    scheduled = {backup["spec"]["cluster"]["name"] for backup in by_kind.get("ScheduledBackup", {}).values()}
    for name, cluster in clusters.items():
        archivers = [plugin for plugin in cluster["spec"].get("plugins", []) if plugin.get("isWALArchiver")]
        stores = [plugin.get("parameters", {}).get("barmanObjectName") for plugin in archivers]
        if not (cluster["spec"].get("backup") or {}).get("barmanObjectStore") and not any(
                store in by_kind.get("ObjectStore", {}) for store in stores):
            errors.append(f"Cluster {name} archives its WAL nowhere (no ObjectStore it names)")
        if name not in scheduled:
            errors.append(f"Cluster {name} has no ScheduledBackup")
    mongo_users = {user["name"] for mongo in by_kind.get("MongoDBCommunity", {}).values()
                   for user in mongo["spec"].get("users", [])}
    mongo_names = set(by_kind.get("MongoDBCommunity", {}))
    for service in generate.SERVICES:
        deployment = by_kind.get("Deployment", {}).get(service)
        if deployment is None:
            errors.append(f"service {service} has no Deployment")
            continue
        refs = {env["name"]: ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name", "")
                for container, _ in _containers(deployment["spec"]["template"]["spec"])
                for env in container.get("env") or []}
        postgres, mongo = refs.get("CRM_POSTGRES_DSN"), refs.get("CRM_MONGO_URI")
        if postgres:
            if not postgres.endswith("-app") or postgres.removesuffix("-app") not in clusters:
                errors.append(f"service {service}: CRM_POSTGRES_DSN comes from {postgres}, which no "
                              f"CloudNativePG Cluster makes")
        elif mongo:
            if not any(mongo == f"{name}-admin-{user}" for name in mongo_names for user in mongo_users):
                errors.append(f"service {service}: CRM_MONGO_URI comes from {mongo}, which no "
                              f"MongoDBCommunity user makes")
        else:
            errors.append(f"service {service} has neither CRM_POSTGRES_DSN nor CRM_MONGO_URI from a Secret")
    return errors


def reference_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Every ConfigMap a workload reads is in the render (kustomize renames generated ones)."""
    config_maps = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "ConfigMap"}
    errors = []
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        for container, _ in _containers(obj["spec"]["template"]["spec"]):
            for source in container.get("envFrom") or []:
                name = (source.get("configMapRef") or {}).get("name")
                if name and name not in config_maps:
                    errors.append(f"{obj['kind']}/{obj['metadata']['name']}: ConfigMap {name} is not defined")
    return errors


def check_objects(objects: list[dict[str, Any]],
                  schemas: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """Every problem with one overlay's rendered objects, each prefixed with its object."""
    config_maps = {obj["metadata"]["name"]: obj.get("data") or {}
                   for obj in objects if obj.get("kind") == "ConfigMap"}
    errors = []
    for obj in objects:
        name = str((obj.get("metadata") or {}).get("name", ""))
        label = f"{obj.get('kind')}/{name}"
        if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            errors.append(f"{label}: the name is not a DNS subdomain")
        found = schema_errors(obj, schemas) + secret_errors(obj)
        if obj.get("kind") in WORKLOADS and not found:
            found += workload_errors(obj, config_maps)
        errors += [f"{label}: {error}" for error in found]
    return errors + coverage_errors(objects) + reference_errors(objects)


def check(root: Path = HERE) -> list[str]:
    """Every problem in the tree at ``root`` (a copy of deploy/k8s in the tests)."""
    errors = [f"{path.relative_to(generate.HERE)} differs from what generate.py makes: run "
              f"python deploy/k8s/generate.py" for path in generate.stale(root)]
    schemas = crd_schemas(root)
    for overlay in overlays(root):
        try:
            objects = render(overlay)
        except RuntimeError as error:
            errors.append(str(error))
            continue
        errors += [f"overlays/{overlay.name}: {error}" for error in check_objects(objects, schemas)]
    return errors


def main() -> int:
    try:
        errors = check()
    except KubectlMissing as missing:
        print(missing, file=sys.stderr)
        return 2
    for error in errors:
        print(error, file=sys.stderr)
    names = ", ".join(overlay.name for overlay in overlays())
    if errors:
        print(f"k8s-check: {len(errors)} problem(s) in the overlays ({names})", file=sys.stderr)
        return 1
    print(f"k8s-check: overlays {names} render and validate (Kubernetes {K8S_VERSION}, "
          f"{len(crd_schemas())} CRD schemas)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
