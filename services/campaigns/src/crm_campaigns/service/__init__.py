"""Campaigns' use cases, one module per area; ``CampaignsService`` is engagement's (kept
importable from here for the callers that came before the split)."""

from crm_campaigns.service.engagement import ENGAGEMENT_CONSUMER, MERGES_CONSUMER, CampaignsService

__all__ = ["ENGAGEMENT_CONSUMER", "MERGES_CONSUMER", "CampaignsService"]
