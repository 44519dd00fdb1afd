import pytest

from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor


def test_a_cursor_round_trips_its_sort_values() -> None:
    cursor = encode_cursor("name", ["ada lovelace", "0190a0c2-0000-7000-8000-000000000000"])
    assert decode_cursor("name", cursor, 2) == ["ada lovelace", "0190a0c2-0000-7000-8000-000000000000"]


@pytest.mark.parametrize("forged", ["", "!!!", "bm90IGpzb24", encode_cursor("created", ["x", "y"]),
                                    encode_cursor("name", ["only-one"])])
def test_forged_or_foreign_cursors_are_refused(forged: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor("name", forged, 2)
