"""What else happens when a ticket changes: assignment, SLA clocks, surveys.

Each collaborator is a :class:`TicketHook`. The ticket's own use cases call every hook, in
order, inside the transaction that made the change, so that what a hook writes (an
assignment, an SLA alert, a survey and their events) commits with the change or not at all,
and happens once per change however often an event is redelivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from crm_ticketing.domain.model import Ticket
from crmkit.postgres import PgUnitOfWork


class MessageKind:
    """The ``direction`` of a row of ticket_messages."""

    INBOUND = "inbound"  # the customer wrote (threaded from crm.interactions.v1)
    REPLY = "reply"  # an agent's public reply, sent through crm.outbound.v1
    NOTE = "note"  # an agent's internal note, never sent


@dataclass(frozen=True)
class TicketChange:
    """What happened to a ticket: it was opened, fields changed (their names), and/or a
    message of a kind was added. ``actor`` is a subject, or "system"."""

    actor: str
    created: bool = False
    fields: tuple[str, ...] = ()
    message: str | None = None


class TicketHook(Protocol):
    async def after_change(self, uow: PgUnitOfWork, before: Ticket | None, after: Ticket,
                           change: TicketChange) -> None:
        """``before`` is None for a ticket just opened. Raise to roll the change back."""
