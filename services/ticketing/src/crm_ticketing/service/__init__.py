"""Ticketing's use cases: the one layer that the HTTP API, gRPC and the consumers call."""

from crm_ticketing.service.articles import KnowledgeBase
from crm_ticketing.service.assignment import Assignment
from crm_ticketing.service.csat import CsatSurveys
from crm_ticketing.service.hooks import MessageKind, TicketChange, TicketHook
from crm_ticketing.service.reports import Reports
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
from crm_ticketing.service.views import ViewsService

__all__ = [
    "MAX_PAGE",
    "MERGES_CONSUMER",
    "SYSTEM",
    "THREADING_CONSUMER",
    "Assignment",
    "CsatSurveys",
    "HistoryPage",
    "InvalidCursor",
    "KnowledgeBase",
    "MessageKind",
    "Reports",
    "TicketChange",
    "TicketHook",
    "TicketPage",
    "TicketingService",
    "ViewsService",
]
