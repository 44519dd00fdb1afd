"""Optimistic concurrency over HTTP: a record's version as its ETag, If-Match on writes.

A write without If-Match gets 428 (the caller must say which version it edits); a write whose
If-Match is not the current version gets 412 with the current ETag, so nobody overwrites a
change they have not seen.
"""

from __future__ import annotations

import re

from crmkit.problems import Problem

_TAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int:
    """The version an If-Match header names; 428 when absent, 412 when it names none."""
    if if_match is None:
        raise Problem(428, "precondition-required", "If-Match required",
                      "Send the ETag of the version you are changing in If-Match")
    found = _TAG.match(if_match.strip())
    if found is None:
        raise Problem(412, "precondition-failed", "Precondition failed",
                      "If-Match is not an ETag of this API")
    return int(found.group(1))


def stale(current: int) -> Problem:
    """The 412 for a write based on an old version."""
    return Problem(412, "precondition-failed", "Precondition failed",
                   "The record changed since you read it; read it again", headers={"ETag": etag(current)},
                   current_version=current)
