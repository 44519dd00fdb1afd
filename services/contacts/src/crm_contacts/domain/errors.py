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
