"""Event types contacts publishes and consumes."""

CONTACT_CREATED = "crm.contacts.contact.created.v1"
INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"
SOURCE = "/crm/contacts"
