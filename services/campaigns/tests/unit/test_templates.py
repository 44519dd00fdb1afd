"""Template rules: the sandbox, strict variables, defaults, and validation naming bad placeholders."""

from __future__ import annotations

import pytest

from crm_campaigns.domain.errors import InvalidFields
from crm_campaigns.domain.templates import RenderError, context, reads_company_details, render, validate

PARTS = {"subject": "Hi {{ contact.first_name | default('there') }}",
         "html": ("<p>{{ contact.custom.plan }} at {{ company.name }}</p>"
                  "<a href='{{ unsubscribe_url }}'>x</a>"),
         "text": "{% for t in contact.tags %}{{ t }} {% endfor %}{{ contact.email }}"}


def _errors(parts: dict[str, str], fields: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    with pytest.raises(InvalidFields) as caught:
        validate(parts, fields)
    return [(e.field, e.message) for e in caught.value.errors]


def test_a_template_using_known_placeholders_and_declared_custom_fields_is_valid() -> None:
    validate(PARTS, ("plan",))


def test_unknown_contact_company_custom_and_top_level_placeholders_are_each_named() -> None:
    errors = _errors({"subject": "{{ contact.nickname }} {{ company.revenue }}", "html": "{{ secret }}",
                      "text": "{{ contact.custom.plan }} {{ contact['custom']['tier'] }}"}, ("plan",))
    assert ("subject", "contact.nickname: unknown contact field 'nickname'") in errors
    assert ("subject", "company.revenue: unknown company field 'revenue'") in errors
    assert ("html", "unknown placeholder 'secret'") in errors
    assert any(f == "text" and "contact.custom.tier" in m for f, m in errors)
    assert not any("custom.plan" in m for _, m in errors)


def test_an_undeclared_custom_field_is_refused() -> None:
    errors = _errors({"subject": "s", "html": "", "text": "{{ contact.custom.plan }}"})
    assert errors == [("text", "contact.custom.plan: unknown custom field 'plan': declare it in the "
                               "template's fields")]


def test_a_syntax_error_names_its_part_and_line() -> None:
    errors = _errors({"subject": "ok", "html": "line\n{% if %}", "text": ""})
    assert errors[0][0] == "html"
    assert "line 2" in errors[0][1]


def test_bad_custom_field_keys_are_refused() -> None:
    assert ("fields[0]", "a custom field key: a-z, 0-9 and _") in _errors(PARTS, ("Bad Key",))


def test_rendering_fills_values_escapes_html_and_applies_defaults() -> None:
    contact = {"first_name": "", "email": "a@x.io", "tags": ["vip"], "custom": {"plan": "<b>pro</b>"}}
    variables = context(contact, {"name": "ACME"}, ("plan",), "https://u.example/unsub")
    out = render(PARTS, variables)
    assert out.subject == "Hi there"
    assert out.html == "<p>&lt;b&gt;pro&lt;/b&gt; at ACME</p><a href='https://u.example/unsub'>x</a>"
    assert out.text == "vip a@x.io"


def test_a_missing_declared_custom_value_renders_empty_or_its_default() -> None:
    text = "[{{ contact.custom.plan }}|{{ contact.custom.plan | default('free') }}]"
    out = render({"subject": "s", "html": "", "text": text}, context({}, None, ("plan",)))
    assert out.text == "[|free]"


def test_unknown_variables_fail_the_render_instead_of_printing_nothing() -> None:
    with pytest.raises(RenderError):
        render({"subject": "{{ nope }}", "html": "", "text": ""}, context({}, None, ()))


def test_the_sandbox_refuses_reaching_into_python_internals() -> None:
    with pytest.raises(RenderError):
        render({"subject": "{{ contact.__class__.__mro__ }}", "html": "",
                "text": "{{ ''.__class__.__subclasses__() }}"}, context({}, None, ()))


def test_company_lookups_are_needed_only_for_fields_beyond_the_contacts_company_link() -> None:
    def parts(html: str) -> dict[str, str]:
        return {"subject": "Hi", "html": html, "text": ""}

    assert not reads_company_details(PARTS)  # company.name is on the link
    assert not reads_company_details(parts("{{ company.id }} {{ company['role'] }}"))
    assert reads_company_details(parts("{{ company.industry }}"))
    assert reads_company_details(parts("{% for d in company.domains %}{{ d }}{% endfor %}"))
    assert reads_company_details(parts("{{ company.name }} {{ company }}"))  # the whole company
    assert reads_company_details(parts("{{ company[key] }}"))  # a key known only when rendering
