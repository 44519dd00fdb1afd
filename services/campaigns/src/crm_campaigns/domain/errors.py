"""The errors campaigns' rules raise; api/errors.py turns each into problem+json. Pure."""

from __future__ import annotations

from crmkit.fields import FieldError

__all__ = ["CampaignsError", "Conflict", "FieldError", "InvalidFields", "InvalidTransition", "NotFound",
           "VersionMismatch"]


class CampaignsError(Exception):
    """Base of what campaigns' rules refuse."""


class InvalidFields(CampaignsError):
    """Every bad field of a write, at once; nothing was written."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFound(CampaignsError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what} in this workspace")
        self.what = what


class VersionMismatch(CampaignsError):
    """The caller's If-Match names a version that is no longer current."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the record changed; its version is now {current}")
        self.current = current


class InvalidTransition(CampaignsError):
    """The campaign's status does not allow this action."""

    def __init__(self, status: str, action: str) -> None:
        super().__init__(f"a {status} campaign cannot be {action}")
        self.status = status
        self.action = action


class Conflict(CampaignsError):
    """The request clashes with the current state (a template a live campaign uses...)."""
