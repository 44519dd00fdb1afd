from collections.abc import Awaitable, Callable

from crm.common.v1 import common_pb2
from crmkit.kafka import Delivered, Envelope, combine, consume, make_event


def envelope(amount: int, event_type: str = "crm.test.money.v1") -> Envelope:
    return make_event(topic="t", type=event_type, source="/s", workspace="ws", subject="a",
                      payload=common_pb2.Money(amount_minor=amount, currency="EUR")).envelope


async def test_a_batch_gives_each_event_once_and_skips_other_types() -> None:
    applied: list[list[Delivered[int]]] = []

    async def apply(items: list[Delivered[int]]) -> None:
        applied.append(items)

    handlers = consume("crm.test.money.v1", common_pb2.Money, lambda e, m: m.amount_minor, apply)
    first, second = envelope(1), envelope(2)
    await handlers.batch([first, envelope(9, "crm.test.other.v1"), second, first])
    assert [[(d.event_id, d.workspace_id, d.item) for d in batch] for batch in applied] == [
        [(first.id, "ws", 1), (second.id, "ws", 2)]]
    await handlers.one(envelope(7, "crm.test.other.v1"))
    assert len(applied) == 1  # nothing of its type: apply is not called
    await handlers.one(second)
    assert [d.item for d in applied[-1]] == [2]


async def test_a_payload_from_another_workspace_than_its_envelope_is_refused() -> None:
    import pytest

    from crmkit.kafka import PermanentError

    async def apply(items: list[Delivered[str]]) -> None:
        raise AssertionError("must not be applied")

    handlers = consume("crm.test.money.v1", common_pb2.Money, lambda e, m: m.currency, apply,
                       workspace_of=lambda money: money.currency)  # the test's stand-in field
    with pytest.raises(PermanentError, match="workspace"):
        await handlers.one(envelope(1))  # envelope workspace "ws", payload says "EUR"


async def test_combined_handlers_take_a_topics_types_in_the_topics_order() -> None:
    seen: list[tuple[str, list[int]]] = []

    def recorder(name: str) -> Callable[[list[Delivered[int]]], Awaitable[None]]:
        async def apply(items: list[Delivered[int]]) -> None:
            seen.append((name, [d.item for d in items]))
        return apply

    handlers = combine(
        consume("crm.test.a.v1", common_pb2.Money, lambda e, m: m.amount_minor, recorder("a")),
        consume("crm.test.b.v1", common_pb2.Money, lambda e, m: m.amount_minor, recorder("b")),
    )
    await handlers.batch([envelope(1, "crm.test.a.v1"), envelope(2, "crm.test.a.v1"),
                          envelope(3, "crm.test.b.v1"), envelope(4, "crm.test.other.v1"),
                          envelope(5, "crm.test.a.v1")])
    # Runs of one type, in order: an a-event after a b-event is never handled before it.
    assert seen == [("a", [1, 2]), ("b", [3]), ("a", [5])]
    await handlers.one(envelope(6, "crm.test.b.v1"))
    await handlers.one(envelope(7, "crm.test.other.v1"))
    assert seen[-1] == ("b", [6])
    assert handlers.event_types == {"crm.test.a.v1", "crm.test.b.v1"}
