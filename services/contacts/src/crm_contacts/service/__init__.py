"""Contacts' use cases: the one layer that the HTTP API, gRPC and the consumers call."""

from crm_contacts.service.contacts import MAX_PAGE, ContactsService, IdentityRequest, TimelinePage

__all__ = ["MAX_PAGE", "ContactsService", "IdentityRequest", "TimelinePage"]
