"""Event types contacts publishes and consumes."""

SOURCE = "/crm/contacts"

CONTACT_CREATED = "crm.contacts.contact.created.v1"
CONTACT_UPDATED = "crm.contacts.contact.updated.v1"
CONTACT_MERGED = "crm.contacts.contact.merged.v1"
CONTACT_ERASED = "crm.contacts.contact.erased.v1"
CONSENT_CHANGED = "crm.contacts.consent.changed.v1"
COMPANY_CREATED = "crm.contacts.company.created.v1"
COMPANY_UPDATED = "crm.contacts.company.updated.v1"
COMPANY_DELETED = "crm.contacts.company.deleted.v1"

INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"
TICKET_CREATED = "crm.tickets.ticket.created.v1"
RECIPIENT_UNSUBSCRIBED = "crm.campaigns.recipient.unsubscribed.v1"
