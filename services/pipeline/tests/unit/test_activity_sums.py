from datetime import UTC, datetime
from uuid import uuid4

from crm_pipeline.domain.model import ActivityDelta, InteractionSeen, sum_activity


def test_a_batch_adds_one_delta_per_contact_and_workspace() -> None:
    ada, bob = uuid4(), uuid4()
    day = [datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3)]
    deltas = sum_activity([
        ("ws", InteractionSeen(ada, day[1])),
        ("ws", InteractionSeen(bob, day[0])),
        ("ws", InteractionSeen(ada, day[2])),
        ("ws", InteractionSeen(ada, day[0])),
        ("other", InteractionSeen(ada, day[0])),
    ])
    assert sorted(deltas, key=lambda d: (d.workspace_id, d.count)) == [
        ActivityDelta("other", ada, 1, day[0]),
        ActivityDelta("ws", bob, 1, day[0]),
        ActivityDelta("ws", ada, 3, day[2]),
    ]


def test_an_empty_batch_adds_nothing() -> None:
    assert sum_activity([]) == []
