"""A/B tests of campaigns, hooked into the sender (``service/sender.py``).

The test lives in the campaign document's ``ab`` field (``domain/ab.py``'s shape plus
``cuts``, the exact split of the audience). The sender asks ``plan`` before each pass:
- the first pass (no winner yet) sends each variant to its test share and skips everyone else;
  at its end ``end_pass`` stamps ``test_started_at`` and parks the campaign until
  ``decide_after`` has passed (the sender's checkpoint ``not_before``);
- the next pass picks the winner (best unique open/click rate of the test sends; a tie goes to
  the first variant), stores it, and sends it to everyone without a send yet.
Test sends carry their variant's name and ``ab_test: true``; the remainder's carry the winner's
name. Everything is in Mongo, so a restart picks up where the test stood.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from crm_campaigns.domain import ab
from crm_campaigns.domain.errors import InvalidFields, InvalidTransition, NotFound
from crm_campaigns.domain.model import Campaign, Template
from crm_campaigns.service.audiences import Audiences
from crm_campaigns.store import campaigns as campaigns_store
from crm_campaigns.store.templates import get_template
from crmkit.fields import FieldError
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


@dataclass
class AbPlan:
    """What one sender pass does for an A/B campaign."""

    test: ab.AbTest
    cuts: list[list[Any]]
    templates: dict[str, Template] = field(default_factory=dict)

    @property
    def testing(self) -> bool:
        return self.test.winner is None

    def variant_of(self, campaign_id: str, contact_id: str) -> str | None:
        """The variant a recipient gets in this pass; None = not now (the remainder waits)."""
        if self.testing:
            name = ab.assign_by_cuts(self.test, self.cuts, campaign_id, contact_id)
            return None if name == ab.REMAINDER else name
        return self.test.winner

    def template_for(self, variant: str) -> Template:
        return self.templates[variant]


async def _counts(database: MongoDatabase, workspace_id: str, campaign_id: str) -> dict[str, dict[str, int]]:
    """Per variant of the test sends: sent (not suppressed), unique opened and clicked."""
    cursor = await database.db.sends.aggregate([
        {"$match": {"workspace_id": workspace_id, "campaign_id": campaign_id, "ab_test": True,
                    "status": {"$nin": ["suppressed", "failed"]}}},
        {"$group": {"_id": "$variant", "sent": {"$sum": 1},
                    "opened": {"$sum": {"$cond": [{"$gt": ["$open_count", 0]}, 1, 0]}},
                    "clicked": {"$sum": {"$cond": [{"$gt": ["$click_count", 0]}, 1, 0]}}}},
    ])
    return {row["_id"]: {"sent": row["sent"], "opened": row["opened"], "clicked": row["clicked"]}
            async for row in cursor}


class AbTests:
    def __init__(self, database: MongoDatabase, audiences: Audiences | None = None) -> None:
        self.database = database
        self.audiences = audiences

    async def _campaign_doc(self, workspace_id: str, campaign_id: str) -> dict[str, Any]:
        doc = await self.database.db.campaigns.find_one({"_id": campaign_id, "workspace_id": workspace_id})
        if doc is None:
            raise NotFound("campaign")
        return doc

    async def set_variants(self, workspace_id: str, campaign_id: str,
                           body: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /variants``: only while the campaign is a draft or scheduled."""
        doc = await self._campaign_doc(workspace_id, campaign_id)
        test, errors = ab.validate_test(body)
        if test is not None:
            for i, v in enumerate(test.variants):
                if v.template_id and await get_template(self.database, workspace_id, v.template_id) is None:
                    errors.append(FieldError(f"variants[{i}].template_id", "no such template"))
        if errors or test is None:
            raise InvalidFields(errors)
        if doc["status"] not in ("draft", "scheduled"):
            raise InvalidTransition(doc["status"], "set variants")
        async with self.database.unit_of_work() as uow:
            await uow.db.campaigns.update_one({"_id": campaign_id, "workspace_id": workspace_id},
                                              {"$set": {"ab": {**test.as_doc(), "cuts": None}}},
                                              session=uow.session)
        return test.as_doc()

    async def results(self, workspace_id: str, campaign_id: str) -> dict[str, Any]:
        doc = await self._campaign_doc(workspace_id, campaign_id)
        if not doc.get("ab"):
            raise NotFound("A/B test of this campaign")
        test = ab.AbTest.from_doc(doc["ab"])
        counts = await _counts(self.database, workspace_id, campaign_id)
        remainder = await self.database.db.sends.count_documents(
            {"workspace_id": workspace_id, "campaign_id": campaign_id, "ab_test": {"$ne": True}})
        return {**test.as_doc(), "due_at": test.due_at(), "remainder_sent": remainder,
                "variants": [{**v, **r.as_dict()} for v, r in
                             zip(test.as_doc()["variants"], ab.results(test, counts), strict=True)]}

    # --- the sender's hooks ------------------------------------------------------------

    async def plan(self, campaign: Campaign, template: Template, now: datetime) -> AbPlan | None:
        """Before a pass: None for a campaign without a test. Splits the audience on the first
        pass; picks the winner once the test is due. Loads each variant's template."""
        doc = await self.database.db.campaigns.find_one({"_id": campaign.id})
        if doc is None or not doc.get("ab"):
            return None
        test = ab.AbTest.from_doc(doc["ab"])
        cuts = doc["ab"].get("cuts")
        if cuts is None:
            cuts = await self._split(campaign, test)
        if test.winner is None and test.is_due(now):
            counts = await _counts(self.database, campaign.workspace_id, campaign.id)
            test = replace(test, winner=ab.pick_winner(test, counts), decided_at=now)
            await self.database.db.campaigns.update_one(
                {"_id": campaign.id}, {"$set": {"ab.winner": test.winner, "ab.decided_at": now}})
        plan = AbPlan(test, cuts)
        for v in test.variants:
            own = (await get_template(self.database, campaign.workspace_id, v.template_id)
                   if v.template_id else None)
            base = own or template
            plan.templates[v.name] = replace(base, subject=v.subject) if v.subject else base
        return plan

    async def _split(self, campaign: Campaign, test: ab.AbTest) -> list[list[Any]]:
        assert self.audiences is not None, "splitting an audience needs contacts"
        ids: list[str] = []
        members = self.audiences.members(campaign.workspace_id, campaign.audience.segments,
                                         campaign.audience.exclude, company_details=False)
        try:
            async for recipient in members:
                ids.append(recipient.contact_id)
        finally:
            await members.aclose()
        cuts = ab.cut_points(test, campaign.id, ids)
        await self.database.db.campaigns.update_one({"_id": campaign.id}, {"$set": {"ab.cuts": cuts}})
        return cuts

    async def end_pass(self, uow: MongoUnitOfWork, campaign: Campaign, plan: AbPlan,
                       checkpoint: Mapping[str, Any]) -> bool:
        """After a pass: True when the campaign waits for its winner (the test went out)."""
        if not plan.testing:
            return False
        now = datetime.now(UTC)
        started = ab.AbTest.from_doc({**plan.test.as_doc(), "test_started_at": now})
        await uow.db.campaigns.update_one({"_id": campaign.id}, {"$set": {"ab.test_started_at": now}},
                                          session=uow.session)
        await campaigns_store.set_checkpoint(uow, campaign.id, {
            "pass": checkpoint.get("pass", 0) + 1, "after": "", "deferred_until": None,
            "not_before": started.due_at()})
        return True


def sent_as(plan: AbPlan | None, variant: str) -> dict[str, Any]:
    """The fields a send of ``variant`` carries."""
    if plan is None:
        return {}
    return {"variant": variant, "ab_test": plan.testing}

