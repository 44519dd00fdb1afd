"""The errors pipeline's rules raise (pipelines, stages, deals); api/errors.py turns each into
problem+json. Pure."""

from __future__ import annotations

from crmkit.fields import FieldError

# FieldError is crmkit's (custom fields share it); importable from here with the domain's errors.
__all__ = ["Conflict", "FieldError", "InvalidFields", "NotFound", "PipelineError", "VersionMismatch"]


class PipelineError(Exception):
    """Base of what pipeline's rules refuse."""


class InvalidFields(PipelineError):
    """Every bad field of a write, at once; nothing was written."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFound(PipelineError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what} in this workspace")
        self.what = what


class VersionMismatch(PipelineError):
    """The caller's If-Match names a version that is no longer current."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the record changed; its version is now {current}")
        self.current = current


class Conflict(PipelineError):
    """The write is well-formed but the record's state refuses it (a deal won twice, a pipeline
    with open deals archived)."""
