"""The event catalogue: an AsyncAPI 3.0 document made from the data policy and the protos, and
the compatibility check that keeps the public contract from breaking.

Each public topic is a channel; each public event type a message with its CloudEvents
headers, its key, the JSON Schema of its PUBLIC payload (after the policy: published and
hashed fields only, every leaf marked with its rule in ``x-crm-policy``) and an example. The
document is served by the service and committed as ``docs/events/asyncapi.json``.

A change is breaking when a partner built on the old document could fail on the new one: a
topic or an event type gone, a field gone, a field's type, format or rule changed (a hashed
field becoming published is also a leak), an enum value gone. Additions are not breaking.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from crm_partners.domain.policy import (
    CONTACT_ERASED,
    POLICIES,
    PUBLIC_TOPIC,
    EventPolicy,
    Rule,
    domain_of,
    hash_value,
    is_nested,
    is_repeated,
    message_of,
)
from crmkit.topics import PARTITIONS, RETENTION_DAYS

VERSION = "1.0.0"
KAFKA_BINDING = "0.5.0"
_INTEGERS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
             FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
# Protobuf's JSON mapping writes 64-bit integers as strings.
_LONGS = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
          FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_HASHED = {"type": "string", "pattern": "^([0-9a-f]{64})?$",
           "description": "HMAC-SHA256 of the trimmed, lower-cased value under the workspace's key, in hex "
                          "(empty when the value is)"}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
}


def _scalar(f: FieldDescriptor) -> dict[str, Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if message_of(f).GetOptions().map_entry:
            return {"type": "object", "additionalProperties": _scalar(message_of(f).fields_by_name["value"])}
        return dict(_WELL_KNOWN[message_of(f).full_name])
    if f.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if f.type in _INTEGERS:
        return {"type": "integer"}
    if f.type in _LONGS:
        return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"type": "number"}
    if f.type == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    if f.type == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def _field(policy: EventPolicy, f: FieldDescriptor, path: str) -> dict[str, Any] | None:
    """A field's public schema; None when nothing of it is published."""
    rule = policy.rules.get(path)
    if rule is Rule.OMIT:
        return None
    if is_nested(f):
        if not any(p.startswith(f"{path}.") for p in policy.rules):
            return None
        schema = _object(policy, message_of(f), f"{path}.")
    elif rule is Rule.HASH:
        schema = {**_HASHED, "x-crm-policy": "hash"}
    elif rule is Rule.PUBLISH:
        schema = {**_scalar(f), "x-crm-policy": "publish"}
    else:
        return None
    return {"type": "array", "items": schema} if is_repeated(f) and not _is_map(f) else schema


def _is_map(f: FieldDescriptor) -> bool:
    return f.type == FieldDescriptor.TYPE_MESSAGE and bool(message_of(f).GetOptions().map_entry)


def _properties(policy: EventPolicy, descriptor: Descriptor, prefix: str
                ) -> Iterator[tuple[str, dict[str, Any]]]:
    for f in descriptor.fields:
        schema = _field(policy, f, f"{prefix}{f.name}")
        if schema is not None:
            yield f.name, schema


def _object(policy: EventPolicy, descriptor: Descriptor, prefix: str) -> dict[str, Any]:
    return {"type": "object", "properties": dict(_properties(policy, descriptor, prefix))}


def payload_schema(policy: EventPolicy) -> dict[str, Any]:
    """The JSON Schema of an event type's public payload."""
    if policy.type == CONTACT_ERASED:
        return {"type": "object", "required": ["contact_id", "erased_at"], "properties": {
            "contact_id": {"type": "string", "format": "uuid", "x-crm-policy": "publish"},
            "erased_at": {"type": "string", "format": "date-time", "x-crm-policy": "publish"}}}
    properties: dict[str, Any] = {}
    for f in policy.descriptor.fields:
        if f.name == policy.entity:
            properties.update(_properties(policy, message_of(f), f"{f.name}."))
        else:
            schema = _field(policy, f, f.name)
            if schema is not None:
                properties[f.name] = schema
    return {"type": "object", "properties": properties}


# -- Examples ---------------------------------------------------------------------------------

_EXAMPLE_ID = "01936f2e-7c4a-7b8e-9a51-3f0c2d4e5a6b"
_EXAMPLE_TIME = "2026-01-15T09:30:00Z"
_EXAMPLE_KEY = b"example workspace hash key"


def _example(name: str, schema: dict[str, Any]) -> Any:
    if schema.get("x-crm-policy") == "hash":
        return hash_value(_EXAMPLE_KEY, f"{name}@example.com")
    kind = schema.get("type")
    if kind == "object":
        return {key: _example(key, value) for key, value in schema.get("properties", {}).items()}
    if kind == "array":
        items = schema.get("items")
        return [_example(name, items)] if items else []
    if kind == "boolean":
        return True
    if kind == "integer":
        return 3
    if kind == "number":
        return 42.5
    if kind != "string":
        return None
    if "enum" in schema:
        values = [v for v in schema["enum"] if not v.endswith("_UNSPECIFIED")]
        return (values or schema["enum"])[0]
    if schema.get("format") == "date-time":
        return _EXAMPLE_TIME
    if schema.get("format") == "int64":
        return "125000"
    if name == "workspace_id":
        return "acme"
    if name == "id" or name.endswith("_id") or schema.get("format") == "uuid":
        return _EXAMPLE_ID
    if name == "currency":
        return "EUR"
    return name.replace("_", " ")


def example(policy: EventPolicy) -> dict[str, Any]:
    payload = _example("", payload_schema(policy))
    assert isinstance(payload, dict)
    return payload


# -- The document -----------------------------------------------------------------------------

_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 in Kafka binary mode: the attributes are record headers.",
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "workspace"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string",
                  "description": "The event's id, the same in webhooks and the pull API: deduplicate on it"},
        "ce_type": {"type": "string", "description": "The event type (the message's name)"},
        "ce_source": {"type": "string", "description": "`/crm/<service>` that produced it"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "The aggregate id (contact, deal, ticket, ...)"},
        "content-type": {"type": "string", "const": "application/json"},
        "workspace": {"type": "string", "description": "The workspace (tenant) id"},
        "traceparent": {"type": "string", "description": "W3C trace context, when there was one"},
    },
}

_DESCRIPTION = """\
The public events of the CRM platform, for partners. Internal events are projected onto one
versioned public topic per domain under a declared data policy: only the fields listed here
are published; personal fields are omitted or replaced by a keyed hash (`x-crm-policy: hash`:
HMAC-SHA256 of the trimmed, lower-cased value under a key of the workspace, in hex), so you
can match a value you already know. Nothing of a workspace is published until its admin opts
in (`PUT /v1/settings`), per domain.

Three ways to receive the same events (the same `id`, `type` and `data`):

- Kafka: your own SASL/SCRAM user reads the topics your subscriptions allow, with your
  consumer-group prefix. Records carry CloudEvents headers (binary mode) and the JSON payload
  as value; the key is `<workspace>:<aggregate id>`, so one aggregate's events keep their order.
  Topics keep records for the retention given in each channel (replay by resetting offsets).
- Signed webhooks (Standard Webhooks) with the structured CloudEvents JSON as body.
- The pull API: `GET /v1/events?after=<cursor>&types=...&wait=<seconds>` (long poll) and
  `GET /v1/events/stream` (Server-Sent Events, resume with `Last-Event-ID`).

Erasure: when a person is erased, `crm.contacts.contact.erased.v1` (payload `contact_id`,
`erased_at`) is published on EVERY public topic of the workspace, keyed
`<workspace>:<contact id>`, and the person's events are deleted from the replay store first,
so no later replay carries them. Delete whatever you hold about that contact. (No Kafka
tombstone is written: the erasure event is the signal.) After `crm.contacts.contact.merged.v1`,
`loser_id`'s data belongs to `survivor_id`.

Compatibility: a public topic and its event types only change compatibly (fields and types are
added, never removed, retyped or made less private); a breaking change comes as a new topic
and event type version (`.v2`), published beside the old one for a transition period.
"""


def _message(policy: EventPolicy) -> dict[str, Any]:
    payload = payload_schema(policy)
    source = "/crm/partners" if policy.type == CONTACT_ERASED else f"/crm/{_service_of(policy)}"
    return {
        "name": policy.type,
        "title": policy.type.removeprefix("crm.").removesuffix(".v1"),
        "summary": policy.summary,
        **({"description": policy.description} if policy.description else {}),
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
        "payload": payload,
        "bindings": {"kafka": {"key": {"type": "string", "description": "`<workspace>:<aggregate id>`"},
                               "bindingVersion": KAFKA_BINDING}},
        "examples": [{
            "name": "example",
            "headers": {"ce_specversion": "1.0", "ce_id": _EXAMPLE_ID, "ce_type": policy.type,
                        "ce_source": source, "ce_time": _EXAMPLE_TIME, "ce_subject": _EXAMPLE_ID,
                        "content-type": "application/json", "workspace": "acme"},
            "payload": example(policy),
        }],
    }


def _service_of(policy: EventPolicy) -> str:
    return {"tickets": "ticketing", "interactions": "ingest"}.get(policy.domain, policy.domain)


def _channel(topic: str, types: list[str]) -> dict[str, Any]:
    days = RETENTION_DAYS[topic]
    return {
        "address": topic,
        "title": f"Public {domain_of(topic)} events",
        "description": f"Kept {days} days; {PARTITIONS[topic]} partitions, "
                       "keyed `<workspace>:<aggregate id>`.",
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in types},
        "bindings": {"kafka": {"topic": topic, "partitions": PARTITIONS[topic],
                               "topicConfiguration": {"cleanup.policy": ["delete"],
                                                      "retention.ms": days * 24 * 3600 * 1000},
                               "bindingVersion": KAFKA_BINDING}},
    }


def _types_on(topic: str) -> list[str]:
    """The event types partners read on a topic: its own, and the erasure on every topic."""
    types = [t for t, p in POLICIES.items() if p.topic == topic and t != CONTACT_ERASED]
    return [*types, CONTACT_ERASED]


@functools.cache
def _document() -> dict[str, Any]:
    topics = list(PUBLIC_TOPIC.values())
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "CRM public events", "version": VERSION, "description": _DESCRIPTION},
        "defaultContentType": "application/json",
        "channels": {topic: _channel(topic, _types_on(topic)) for topic in topics},
        "operations": {
            f"receive-{domain_of(topic)}": {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"Read the {domain_of(topic)} events",
                "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in _types_on(topic)],
            }
            for topic in topics
        },
        "components": {
            "schemas": {"CloudEventsHeaders": _HEADERS},
            "messages": {t: _message(p) for t, p in POLICIES.items()},
        },
    }


def asyncapi() -> dict[str, Any]:
    """The catalogue (a copy: callers may change it)."""
    return copy.deepcopy(_document())


# -- Compatibility ----------------------------------------------------------------------------

def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` breaks a partner built on ``old``; additions are fine."""
    found: list[str] = []
    for topic in old.get("channels", {}):
        if topic not in new.get("channels", {}):
            found.append(f"topic {topic} removed")
            continue
        before, after = old["channels"][topic], new["channels"][topic]
        gone = set(before.get("messages", {})) - set(after.get("messages", {}))
        found.extend(f"event type {t} no longer on {topic}" for t in sorted(gone))
    new_messages = new.get("components", {}).get("messages", {})
    for name, message in old.get("components", {}).get("messages", {}).items():
        if name not in new_messages:
            found.append(f"event type {name} removed")
            continue
        found.extend(_schema_changes(message.get("payload", {}), new_messages[name].get("payload", {}), name))
    return found


def _schema_changes(old: dict[str, Any], new: dict[str, Any], where: str) -> Iterator[str]:
    for attribute in ("type", "format"):
        if old.get(attribute) != new.get(attribute):
            yield f"{where}: {attribute} changed from {old.get(attribute)!r} to {new.get(attribute)!r}"
    if old.get("x-crm-policy") != new.get("x-crm-policy"):
        yield f"{where}: rule changed from {old.get('x-crm-policy')} to {new.get('x-crm-policy')}"
    if "enum" in old:
        removed = sorted(set(old["enum"]) - set(new.get("enum", old["enum"])))
        if removed:
            yield f"{where}: enum values removed: {', '.join(removed)}"
    for name, schema in old.get("properties", {}).items():
        if name not in new.get("properties", {}):
            yield f"{where}.{name}: removed"
        else:
            yield from _schema_changes(schema, new["properties"][name], f"{where}.{name}")
    if isinstance(old.get("items"), dict):
        yield from _schema_changes(old["items"], new.get("items") or {}, f"{where}[]")
