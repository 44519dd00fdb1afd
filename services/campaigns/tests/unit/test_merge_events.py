from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from crm.contacts.v1 import events_pb2
from crm_campaigns.consumers.contacts import contact_merge
from crmkit.kafka import Envelope, PermanentError

ENVELOPE = Envelope(id="e1", type="crm.contacts.contact.merged.v1", source="/crm/contacts",
                    workspace="ws", subject="", time=datetime(2026, 11, 23, tzinfo=UTC), data=b"")


def merged(loser: str, survivor: str) -> events_pb2.ContactMerged:
    return events_pb2.ContactMerged(workspace_id="ws", loser_id=loser, survivor_id=survivor)


def test_a_merge_names_its_loser_and_survivor() -> None:
    ids = [str(uuid4()), str(uuid4())]
    merge = contact_merge(ENVELOPE, merged(*ids))
    assert (merge.loser_id, merge.survivor_id) == (ids[0], ids[1])


@pytest.mark.parametrize("ids", [("not-a-uuid", str(uuid4())), (str(UUID(int=7)), str(UUID(int=7)))])
def test_a_merge_without_two_valid_contacts_is_refused(ids: tuple[str, str]) -> None:
    with pytest.raises(PermanentError):
        contact_merge(ENVELOPE, merged(*ids))
