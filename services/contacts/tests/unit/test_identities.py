from datetime import UTC, datetime

import pytest

from crm_contacts.domain.errors import InvalidCursor, InvalidIdentity
from crm_contacts.domain.model import IdentityKind, TimelinePosition, normalise_identity, summarise


@pytest.mark.parametrize(
    ("kind", "raw", "stored"),
    [
        (IdentityKind.EMAIL, "  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        (IdentityKind.PHONE, "+44 (20) 7946-0958", "+442079460958"),
        (IdentityKind.WHATSAPP, "0044 20 7946 0958", "+442079460958"),
        (IdentityKind.X, "@AdaL", "adal"),
        (IdentityKind.CHAT_VISITOR, " v-123 ", "v-123"),
    ],
)
def test_one_identity_has_one_spelling(kind: IdentityKind, raw: str, stored: str) -> None:
    assert normalise_identity(kind, raw).value == stored


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (IdentityKind.EMAIL, "not-an-email"),
        (IdentityKind.EMAIL, "two@@example.com"),
        (IdentityKind.PHONE, "12345"),
        (IdentityKind.PHONE, "+0123456789"),
        (IdentityKind.TELEGRAM, "   "),
    ],
)
def test_invalid_identities_are_refused_with_their_kind(kind: IdentityKind, raw: str) -> None:
    with pytest.raises(InvalidIdentity) as error:
        normalise_identity(kind, raw)
    assert error.value.kind == kind.value


def test_timeline_cursors_round_trip_and_reject_forgeries() -> None:
    position = TimelinePosition(datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "interaction:abc")
    assert TimelinePosition.decode(position.encode()) == position
    for forged in ("", "!!!", "bm90IGEgY3Vyc29y"):
        with pytest.raises(InvalidCursor):
            TimelinePosition.decode(forged)


def test_a_timeline_line_is_the_subject_or_the_start_of_the_text() -> None:
    assert summarise("Order 42", "long text") == "Order 42"
    assert summarise("", "  hello\n  world ") == "hello world"
    assert summarise("", "x" * 500).endswith("…")
    assert len(summarise("", "x" * 500)) == 140


def test_cursors_with_out_of_range_or_zoneless_times_are_refused() -> None:
    import base64

    for stamp in ("0001-01-01T00:00:00+14:00", "2026-11-23T09:30:00"):
        forged = base64.urlsafe_b64encode(f"{stamp}|x".encode()).decode()
        with pytest.raises(InvalidCursor):
            TimelinePosition.decode(forged)
