"""Reading the services' OpenAPI documents: their operations, paths filled with ids, and the
smallest body an operation's schema accepts (so a check reaches the handler instead of stopping
at request validation)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

METHODS = ("get", "head", "post", "put", "patch", "delete")
_PARAM = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class Operation:
    service: str
    method: str  # upper case
    path: str  # the template, e.g. /v1/contacts/{contact_id}
    spec: dict[str, Any]  # the operation object

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.method, self.path)

    @property
    def parameters(self) -> list[str]:
        return _PARAM.findall(self.path)

    def header(self, name: str) -> bool:
        return any(p.get("in") == "header" and p["name"].lower() == name
                   for p in self.spec.get("parameters", []))

    def fill(self, values: dict[str, str]) -> str:
        return _PARAM.sub(lambda match: values[match.group(1)], self.path)


def operations(service: str, spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield Operation(service, method.upper(), path, item[method])


def shape(path: str) -> str:
    """A path template with its parameter names erased: /v1/contacts/{survivor_id}/merge and
    /v1/contacts/{contact_id}/merge have one shape."""
    return _PARAM.sub("{}", path)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def minimal_value(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """The smallest value ``schema`` accepts, as far as a generic reading can tell."""
    schema = _resolve(spec, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"] or schema[key]
            return minimal_value(spec, options[0])
    if "allOf" in schema:
        return minimal_value(spec, schema["allOf"][0])
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: minimal_value(spec, properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal_value(spec, schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "integer" or kind == "number":
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return False
    if kind == "string":
        return {"date": "2030-01-01", "date-time": "2030-01-01T00:00:00Z"}.get(
            schema.get("format", ""), "x" * max(schema.get("minLength", 1), 1))
    return {}


def minimal_body(spec: dict[str, Any], operation: Operation) -> tuple[str, Any] | None:
    """(content type, value) of the smallest request body the operation takes, if it takes one."""
    body = operation.spec.get("requestBody")
    if not body:
        return None
    content_type, media = next(iter(body["content"].items()))
    if content_type != "application/json":
        return content_type, b"x\n"
    return content_type, minimal_value(spec, media.get("schema", {}))
