TICKET_CREATED = "crm.tickets.ticket.created.v1"
INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"
CONTACT_MERGED = "crm.contacts.contact.merged.v1"
SOURCE = "/crm/ticketing"
