"""The import's pure parts: the streaming CSV reader, the mapping, rows as writes, the plan."""

from __future__ import annotations

import csv
import io
from uuid import uuid4

import pytest

from crm_contacts.domain.fields import Entity
from crm_contacts.domain.import_plan import plan_batch
from crm_contacts.domain.imports import (
    CsvStream,
    InvalidCsv,
    OnDuplicate,
    RowReader,
    check_mapping,
    mapped_indices,
)
from crm_contacts.domain.model import Identity, IdentityKind
from crmkit.fields import FieldDefinition, FieldType

TEXT = ('\ufeffE-mail,Name,Note\r\n'
        'a@example.com,"Ann, the ""first""","two\nlines"\r\n'
        '\r\n'
        'b@example.com,Bé,"a ""quoted"" word, and\r\nmore"\n'
        'c@example.com,Cy,last')


def stream(data: bytes, size: int) -> list[list[str]]:
    reader = CsvStream()
    records = []
    for start in range(0, len(data), size):
        records += reader.feed(data[start:start + size])
    return records + reader.close()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 10_000])
def test_records_are_the_same_however_the_file_is_chunked(size: int) -> None:
    expected = list(csv.reader(io.StringIO(TEXT.removeprefix("\ufeff"), newline="")))
    assert stream(TEXT.encode(), size) == expected
    assert expected[1] == ["a@example.com", 'Ann, the "first"', "two\nlines"]


def test_unreadable_files_are_refused() -> None:
    with pytest.raises(InvalidCsv, match="not UTF-8"):
        stream(b"E-mail\n\xff\n", 3)
    with pytest.raises(InvalidCsv, match="never ends"):
        stream(b'E-mail\n"open\n', 4)


def test_a_mapping_names_each_bad_column() -> None:
    plan = {"plan": FieldDefinition(Entity.CONTACT, "plan", "Plan", FieldType.TEXT)}
    errors = check_mapping({"Mail": "emails", "P": "custom_fields.plan", "Q": "custom_fields.nope",
                            "W": "identities.email", "F": "first_name", "G": "first_name", "X": "age"}, plan)
    assert [e.field for e in errors] == ["mapping.Q", "mapping.W", "mapping.G", "mapping.X"]
    assert check_mapping({"F": "first_name"}, {})[0].message.startswith("no column gives an identity")
    assert check_mapping({"M": "emails", "N": "emails", "T": "identities.telegram"}, {}) == []
    with pytest.raises(InvalidCsv, match="no column 'Phone'"):
        mapped_indices({"Phone": "phones"}, ["E-mail"])


def test_a_row_becomes_a_validated_write_whose_errors_name_columns() -> None:
    definitions = {"seats": FieldDefinition(Entity.CONTACT, "seats", "Seats", FieldType.NUMBER)}
    reader = RowReader({"Work": "emails", "Home": "emails", "Seats": "custom_fields.seats",
                        "Stage": "lifecycle_stage", "Tags": "tags"}, definitions, "GB")
    good = reader.read(2, ["a@x.com; b@x.com", "c@x.com", "3", "Lead", "VIP,news|x"])
    assert good.changes is not None
    assert [i.value for i in good.identities] == ["a@x.com", "b@x.com", "c@x.com"]
    assert (good.changes.custom, good.changes.lifecycle_stage.value) == ({"seats": 3}, "lead")
    assert good.changes.tags == ("news", "vip", "x")
    bad = reader.read(3, ["a@x.com", "nope", "three", "", ""])
    assert bad.changes is None
    assert [(e.field, e.message) for e in bad.errors] == [
        ("Seats", "custom_fields.seats: not a number"), ("Home", "emails: not an email address")]
    assert reader.read(4, ["", "", "1", "", ""]).errors[0].message.startswith("the row has no email")


def test_the_plan_decides_per_row_in_file_order() -> None:
    reader = RowReader({"E": "emails", "N": "first_name"}, {}, None)
    rows = [reader.read(n, cells) for n, cells in enumerate(
        [["known@x.com", "K"], ["new@x.com", "A"], ["NEW@x.com", "B"], ["gone@x.com", ""]], start=2)]
    known = uuid4()
    owners = {Identity(IdentityKind.EMAIL, "known@x.com"): known}
    gone = {Identity(IdentityKind.EMAIL, "gone@x.com")}

    skip = plan_batch(rows, OnDuplicate.SKIP, owners, {}, gone)
    assert (skip.created, skip.skipped, skip.failed, skip.error_rows) == (1, 3, 0, 1)
    assert skip.drafts[0].first_name == "A"
    create = plan_batch(rows, OnDuplicate.CREATE, owners, {}, gone)
    assert (create.created, create.failed) == (1, 2)
    assert [e.message for e in create.errors][:2] == [
        f"an email of this row already belongs to contact {known}",
        "an email of this row is already in row 3 of this file"]
    update = plan_batch(rows, OnDuplicate.UPDATE, owners, {}, gone)  # the owner is not live
    assert (update.created, update.updated, update.failed) == (1, 1, 1)
    assert update.drafts[0].first_name == "B"  # the file's later row fills in the new contact
