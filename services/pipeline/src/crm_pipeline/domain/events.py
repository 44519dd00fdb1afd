INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"
CONTACT_MERGED = "crm.contacts.contact.merged.v1"
