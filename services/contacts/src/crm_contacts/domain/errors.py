from crmkit.fields import FieldError

# FieldError is crmkit's (custom fields share it); importable from here with the domain's errors.
__all__ = ["Conflict", "ContactsError", "DuplicateIdentities", "FieldError", "InvalidCursor", "InvalidFields",
           "InvalidIdentity", "NotFound", "VersionMismatch"]


class ContactsError(Exception):
    """Base of the domain's errors."""


class InvalidIdentity(ContactsError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"invalid {kind} identity: {reason}")
        self.kind = kind
        self.reason = reason


class InvalidCursor(ContactsError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this API gave out")


class InvalidFields(ContactsError):
    """A write names fields that are invalid; nothing was written."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFound(ContactsError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what} in this workspace")
        self.what = what


class VersionMismatch(ContactsError):
    """The caller's If-Match names a version that is no longer current."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the record changed; its version is now {current}")
        self.current = current


class DuplicateIdentities(ContactsError):
    """Some identities of a new or changed contact already belong to other contacts."""

    def __init__(self, owners: dict[str, str]) -> None:
        super().__init__("identities already belong to other contacts")
        self.owners = owners


class Conflict(ContactsError):
    """The request cannot be done in the record's current state (merging an erased contact...)."""
