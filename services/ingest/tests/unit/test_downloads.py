"""Files are served as downloads, whatever a sender put in their headers."""

from __future__ import annotations

from crm_ingest.api.routes import _download


def test_a_stored_content_type_a_header_cannot_carry_is_served_as_octet_stream() -> None:
    assert _download(b"x", "application/pdf", "a.pdf").media_type == "application/pdf"
    hostile = _download(b"x", "application/\u00fcber\u4e2d", "a.bin")
    assert hostile.media_type == "application/octet-stream"
    assert _download(b"x", "text/html\r\nX-Evil: 1", "a").media_type == "application/octet-stream"
