"""Campaign reports: per variant figures and the engagement over time."""

from __future__ import annotations

from typing import Any

from crm_campaigns.domain.errors import NotFound
from crm_campaigns.domain.reports import figures, parse_interval, series
from crm_campaigns.store import reports as store
from crmkit.mongo import MongoDatabase


class ReportsService:
    def __init__(self, database: MongoDatabase, conversion_window_days: int) -> None:
        self.database = database
        self.conversion_window_days = conversion_window_days

    async def campaign_report(self, workspace_id: str, campaign_id: str, interval: str) -> dict[str, Any]:
        """Raises InvalidFields for an unknown interval, NotFound for another workspace's campaign."""
        unit = parse_interval(interval)
        if not await store.campaign_exists(self.database, workspace_id, campaign_id):
            raise NotFound("campaign")
        variants = figures(await store.send_figures(self.database, workspace_id, campaign_id),
                           await store.conversion_figures(self.database, workspace_id, campaign_id))
        hits = await store.human_hits(self.database, workspace_id, campaign_id)
        return {"campaign_id": campaign_id, "interval": unit,
                "conversion_window_days": self.conversion_window_days,
                "variants": [v.as_dict() for v in variants], "series": series(hits, unit)}
