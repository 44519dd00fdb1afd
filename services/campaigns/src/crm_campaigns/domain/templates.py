"""Email templates: Jinja2 in a sandbox, the placeholders they may use, and rendering. Pure.

A template has a subject, an HTML part and a text part. Placeholders:

- ``contact.<field>`` for ``CONTACT_FIELDS``;
- ``contact.custom.<key>`` only for the custom field keys the template declares in ``fields``
  (contacts has no RPC that lists a workspace's field definitions, so the template names the
  keys it relies on; a contact without a value renders it empty or with its ``default``);
- ``company.<field>`` for ``COMPANY_FIELDS`` (the contact's first company);
- ``unsubscribe_url``.

Anything else, or a syntax error, is refused when the template is written (422 naming the
placeholder). ``default`` replaces a missing or empty value: ``{{ contact.first_name |
default("there") }}``. Rendering uses ``StrictUndefined``: an unknown variable fails the
render instead of printing nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, Undefined, meta, nodes
from jinja2 import Template as Compiled
from jinja2.sandbox import SandboxedEnvironment

from crm_campaigns.domain.errors import FieldError, InvalidFields

CONTACT_FIELDS = frozenset({"id", "first_name", "last_name", "display_name", "email", "lifecycle_stage",
                            "tags", "custom"})
COMPANY_FIELDS = frozenset({"id", "name", "role", "industry", "size", "domains"})
TOP_LEVEL = frozenset({"contact", "company", "unsubscribe_url"})
PARTS = ("subject", "html", "text")
FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _default(value: Any, fallback: Any = "") -> Any:
    """The value, or ``fallback`` when it is undefined, None or empty."""
    if isinstance(value, Undefined) or value is None or value == "":
        return fallback
    return value


def environment(*, autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=autoescape,
                               keep_trailing_newline=True)
    env.filters["default"] = _default
    env.filters["d"] = _default
    return env


_HTML = environment(autoescape=True)
_PLAIN = environment(autoescape=False)


def _env(part: str) -> SandboxedEnvironment:
    return _HTML if part == "html" else _PLAIN


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def _paths(node: nodes.Node) -> Iterator[tuple[str, ...]]:
    """Every dotted path read from a name: ``contact.custom.plan`` as its parts."""
    for found in node.find_all((nodes.Getattr, nodes.Getitem)):
        chain: list[str] = []
        current: nodes.Node = found
        while True:
            if isinstance(current, nodes.Getattr):
                chain.append(current.attr)
                current = current.node
            elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const) \
                    and isinstance(current.arg.value, str):
                chain.append(current.arg.value)
                current = current.node
            else:
                break
        if isinstance(current, nodes.Name):
            yield (current.name, *reversed(chain))


def _problems(path: tuple[str, ...], fields: frozenset[str]) -> str | None:
    root = path[0]
    if root == "contact" and len(path) > 1:
        if path[1] not in CONTACT_FIELDS:
            return f"unknown contact field {path[1]!r}"
        if path[1] == "custom" and len(path) > 2 and path[2] not in fields:
            return f"unknown custom field {path[2]!r}: declare it in the template's fields"
    if root == "company" and len(path) > 1 and path[1] not in COMPANY_FIELDS:
        return f"unknown company field {path[1]!r}"
    return None


def validate(parts: Mapping[str, str], fields: tuple[str, ...]) -> None:
    """Raises InvalidFields naming each part's syntax errors and unknown placeholders."""
    errors: list[FieldError] = []
    declared = frozenset(fields)
    for index, key in enumerate(fields):
        if not FIELD_KEY.match(key):
            errors.append(FieldError(f"fields[{index}]", "a custom field key: a-z, 0-9 and _"))
    for part in PARTS:
        source = parts.get(part, "")
        try:
            tree = _env(part).parse(source)
        except TemplateSyntaxError as exc:
            errors.append(FieldError(part, f"template syntax error on line {exc.lineno}: {exc.message}"))
            continue
        for name in sorted(meta.find_undeclared_variables(tree)):
            if name not in TOP_LEVEL:
                errors.append(FieldError(part, f"unknown placeholder {name!r}"))
        seen: set[tuple[str, ...]] = set()
        for path in _paths(tree):
            if path in seen:
                continue
            seen.add(path)
            problem = _problems(path, declared)
            if problem:
                errors.append(FieldError(part, f"{'.'.join(path)}: {problem}"))
    if errors:
        raise InvalidFields(errors)


# What the contact's own company link carries; anything else about the company (industry, size,
# domains) costs the sender a GetCompany call per company of the audience.
COMPANY_LINK_FIELDS = frozenset({"id", "name", "role"})


def reads_company_details(parts: Mapping[str, str]) -> bool:
    """Whether a part reads a company field beyond ``COMPANY_LINK_FIELDS``, or the company as a
    whole (``{{ company }}``, a loop over it, a computed key): only then must the sender look
    the companies up. A part that does not parse counts as reading them."""
    for part in PARTS:
        try:
            tree = _env(part).parse(parts.get(part, ""))
        except TemplateSyntaxError:
            return True
        accessed: set[int] = set()
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            assert isinstance(node, nodes.Getattr | nodes.Getitem)
            if isinstance(node.node, nodes.Name) and node.node.name == "company":
                accessed.add(id(node.node))
                key = (node.attr if isinstance(node, nodes.Getattr)
                       else node.arg.value if isinstance(node.arg, nodes.Const) else None)
                if key not in COMPANY_LINK_FIELDS:
                    return True
        if any(name.name == "company" and id(name) not in accessed for name in tree.find_all(nodes.Name)):
            return True
    return False


class RenderError(Exception):
    """A template failed for one recipient (a value the sandbox refused, say)."""


def context(contact: Mapping[str, Any], company: Mapping[str, Any] | None, fields: tuple[str, ...],
            unsubscribe_url: str = "") -> dict[str, Any]:
    """The variables of one recipient: every known field present (empty when unknown), so
    that only a placeholder the template should not have fails under StrictUndefined."""
    custom_values = dict(contact.get("custom") or {})
    values: dict[str, Any] = {name: contact.get(name, "") for name in CONTACT_FIELDS - {"custom"}}
    values["tags"] = list(contact.get("tags") or [])
    values["custom"] = {key: custom_values.get(key, "") for key in fields}
    company_values: dict[str, Any] = {name: (company or {}).get(name, "") for name in COMPANY_FIELDS}
    company_values["domains"] = list((company or {}).get("domains") or [])
    return {"contact": values, "company": company_values, "unsubscribe_url": unsubscribe_url}


@lru_cache(maxsize=512)
def _compiled(part: str, source: str) -> Compiled:
    """A part compiled once for as long as its source is in use: compiling a part costs some forty
    times what rendering it does, and a campaign renders the same three parts for every recipient.
    Keyed by the source text itself, so an edited template can never be served stale."""
    return _env(part).from_string(source)


def render(parts: Mapping[str, str], variables: Mapping[str, Any]) -> Rendered:
    try:
        out = {part: _compiled(part, parts.get(part, "")).render(variables) for part in PARTS}
    except TemplateError as exc:
        raise RenderError(str(exc)) from exc
    return Rendered(subject=" ".join(out["subject"].split()), html=out["html"], text=out["text"])
