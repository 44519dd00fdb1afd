RAW_RECEIVED = "crm.ingest.raw.received.v1"
INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"
SOURCE = "/crm/ingest"
