INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"
CONTACT_MERGED = "crm.contacts.contact.merged.v1"

# Tracking and reports (published on crm.campaigns.v1; consumed from crm.pipeline.v1).
MESSAGE_OPENED = "crm.campaigns.message.opened.v1"
MESSAGE_CLICKED = "crm.campaigns.message.clicked.v1"
RECIPIENT_UNSUBSCRIBED = "crm.campaigns.recipient.unsubscribed.v1"
DEAL_WON = "crm.pipeline.deal.won.v1"
TRACKING_SOURCE = "/crm/campaigns"

# Campaigns and their messages (published on crm.campaigns.v1; outbound on crm.outbound.v1).
SOURCE = "/crm/campaigns"
ORIGIN = "campaigns"
OUTBOUND_REQUESTED = "crm.outbound.message.requested.v1"
DELIVERY_UPDATED = "crm.interactions.delivery.updated.v1"
CAMPAIGN_SCHEDULED = "crm.campaigns.campaign.scheduled.v1"
CAMPAIGN_STARTED = "crm.campaigns.campaign.started.v1"
CAMPAIGN_PAUSED = "crm.campaigns.campaign.paused.v1"
CAMPAIGN_RESUMED = "crm.campaigns.campaign.resumed.v1"
CAMPAIGN_CANCELLED = "crm.campaigns.campaign.cancelled.v1"
CAMPAIGN_COMPLETED = "crm.campaigns.campaign.completed.v1"
MESSAGE_SENT = "crm.campaigns.message.sent.v1"
MESSAGE_DELIVERED = "crm.campaigns.message.delivered.v1"
MESSAGE_BOUNCED = "crm.campaigns.message.bounced.v1"
MESSAGE_FAILED = "crm.campaigns.message.failed.v1"
# Journeys (published on crm.campaigns.v1).
JOURNEY_OWNER_NOTIFIED = "crm.campaigns.journey.owner_notified.v1"
# What journeys start on or react to (consumed).
SEGMENT_MEMBERSHIP_CHANGED = "crm.contacts.segment.membership_changed.v1"
DEAL_STAGE_CHANGED = "crm.pipeline.deal.stage_changed.v1"
DEAL_LOST = "crm.pipeline.deal.lost.v1"
TICKET_SOLVED = "crm.tickets.ticket.solved.v1"
