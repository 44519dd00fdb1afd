"""Ticketing's use cases: the one layer that the HTTP API, gRPC and the consumers call."""

from crm_ticketing.service.articles import KnowledgeBase
from crm_ticketing.service.hooks import MessageKind, TicketChange, TicketHook
from crm_ticketing.service.tickets import (
    MAX_PAGE,
    MERGES_CONSUMER,
    SYSTEM,
    THREADING_CONSUMER,
    HistoryPage,
    InvalidCursor,
    TicketingService,
    TicketPage,
)

__all__ = [
    "MAX_PAGE",
    "MERGES_CONSUMER",
    "SYSTEM",
    "THREADING_CONSUMER",
    "HistoryPage",
    "InvalidCursor",
    "KnowledgeBase",
    "MessageKind",
    "TicketChange",
    "TicketHook",
    "TicketPage",
    "TicketingService",
]
