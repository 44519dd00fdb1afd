"""The errors ticketing's rules raise, whatever part (tickets, the knowledge base) raises them;
api/errors.py turns each into problem+json. Pure."""

from __future__ import annotations

from crmkit.fields import FieldError

# FieldError is crmkit's (custom fields share it); importable from here with the domain's errors.
__all__ = ["FieldError", "InvalidFields", "NotFound", "TicketingError", "VersionMismatch"]


class TicketingError(Exception):
    """Base of what ticketing's rules refuse."""


class InvalidFields(TicketingError):
    """Every bad field of a write, at once; nothing was written."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFound(TicketingError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what} in this workspace")
        self.what = what


class VersionMismatch(TicketingError):
    """The caller's If-Match names a version that is no longer current."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the record changed; its version is now {current}")
        self.current = current
