"""What custom fields are on in contacts. The rules of custom fields are crmkit.fields'."""

from __future__ import annotations

from enum import StrEnum


class Entity(StrEnum):
    CONTACT = "contact"
    COMPANY = "company"
