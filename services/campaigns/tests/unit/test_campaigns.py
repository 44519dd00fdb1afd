"""Campaign rules: transitions, schedules, throttling, quiet hours per time zone; the audience
member mapping (consent) and delivery statuses that only move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.struct_pb2 import Struct

from crm.contacts.v1 import contacts_pb2
from crm_campaigns.domain import campaigns as rules
from crm_campaigns.domain.errors import InvalidFields, InvalidTransition
from crm_campaigns.domain.model import Audience, Campaign, QuietHours
from crm_campaigns.store.campaigns import address_hash
from crm_campaigns.store.sends import advances
from crm_campaigns.wire import email_consent, recipient_of

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def campaign(status: str = "draft", **changes: object) -> Campaign:
    base = Campaign(id="c1", workspace_id="w", name="n", template_id="t", audience=Audience(("s",)),
                    status=status, schedule_at=None, throttle_per_minute=None, quiet_hours=None, version=1,
                    created_at=NOW, updated_at=NOW)
    return base.__class__(**{**base.__dict__, **changes})


@pytest.mark.parametrize(("status", "action", "after"), [
    ("draft", "schedule", "scheduled"), ("draft", "send", "sending"), ("scheduled", "send", "sending"),
    ("sending", "pause", "paused"), ("scheduled", "pause", "paused"), ("paused", "cancel", "cancelled"),
    ("sending", "cancel", "cancelled"),
])
def test_allowed_transitions(status: str, action: str, after: str) -> None:
    moved = rules.transition(campaign(status), action, NOW)
    assert moved.status == after
    assert moved.version == 2


@pytest.mark.parametrize(("status", "action"), [
    ("sent", "pause"), ("cancelled", "resume"), ("sending", "send"), ("sending", "schedule"),
    ("draft", "resume"), ("sent", "cancel"), ("sending", "edit"), ("sending", "delete"),
])
def test_refused_transitions(status: str, action: str) -> None:
    with pytest.raises(InvalidTransition):
        rules.transition(campaign(status), action, NOW) if action not in ("edit", "delete") \
            else rules.check(campaign(status), action)


def test_resuming_a_started_campaign_sends_and_an_unstarted_scheduled_one_waits() -> None:
    started = campaign("paused", started_at=NOW - timedelta(hours=1))
    assert rules.transition(started, "resume", NOW).status == "sending"
    waiting = campaign("paused", schedule_at=NOW + timedelta(days=1))
    assert rules.transition(waiting, "resume", NOW).status == "scheduled"


def test_a_schedule_must_be_given_and_in_the_future() -> None:
    for bad in (None, NOW - timedelta(seconds=1), NOW):
        with pytest.raises(InvalidFields) as caught:
            rules.validate_schedule(bad, NOW, required=True)
        assert caught.value.errors[0].field == "schedule_at"
    rules.validate_schedule(NOW + timedelta(minutes=1), NOW, required=True)


def test_settings_errors_name_each_field() -> None:
    errors = rules.validate_settings(name=" ", throttle_per_minute=0,
                                     quiet_hours=QuietHours("25:00", "25:00", "Mars/Base"), segments=(),
                                     exclude=())
    assert {e.field for e in errors} == {"name", "throttle_per_minute", "audience.segments",
                                         "quiet_hours.start", "quiet_hours.end", "quiet_hours.time_zone"}


QUIET = QuietHours("21:00", "08:00", "Europe/Paris")


def test_quiet_hours_wrap_midnight_in_the_campaigns_time_zone() -> None:
    # 22:30 in Paris (UTC+1 in winter) is quiet until 08:00 Paris the next day.
    at = datetime(2026, 1, 15, 21, 30, tzinfo=UTC)
    assert rules.quiet_until(QUIET, at) == datetime(2026, 1, 16, 7, 0, tzinfo=UTC)
    # 07:59 Paris: quiet until 08:00 the same morning.
    assert rules.quiet_until(QUIET, datetime(2026, 1, 16, 6, 59, tzinfo=UTC)) == datetime(2026, 1, 16, 7, 0,
                                                                                          tzinfo=UTC)
    # Noon in Paris: no quiet hours.
    assert rules.quiet_until(QUIET, datetime(2026, 1, 16, 11, 0, tzinfo=UTC)) is None


def test_the_recipients_own_time_zone_wins_and_dst_is_followed() -> None:
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # noon in Paris, 22:00 in Sydney (AEST, UTC+10)
    assert rules.quiet_until(QUIET, at) is None
    assert rules.quiet_until(QUIET, at, "Australia/Sydney") == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    assert rules.quiet_until(QUIET, at, "Not/AZone") is None  # unknown: the campaign's zone
    # Summer in Paris is UTC+2: 19:30 UTC is 21:30 local, quiet until 06:00 UTC.
    assert rules.quiet_until(QUIET, datetime(2026, 7, 1, 19, 30, tzinfo=UTC)) == datetime(2026, 7, 2, 6, 0,
                                                                                           tzinfo=UTC)


def test_a_daytime_window_does_not_wrap() -> None:
    lunch = QuietHours("12:00", "13:00", "UTC")
    assert rules.quiet_until(lunch, NOW) == NOW + timedelta(hours=1)
    assert rules.quiet_until(lunch, NOW + timedelta(hours=1)) is None


def test_throttle_limits_batches_and_paces_them() -> None:
    assert rules.batch_size(30, 100) == 30
    assert rules.batch_size(None, 100) == 100
    assert rules.pace(60, 60, 10.0) == pytest.approx(50.0)  # a minute's worth in 10 s: wait 50 s
    assert rules.pace(60, 60, 70.0) == 0.0
    assert rules.pace(500, None, 0.0) == 0.0


def _member(consents: list[tuple[str, str, str, int]], custom: dict[str, str] | None = None
            ) -> contacts_pb2.AudienceMember:
    member = contacts_pb2.AudienceMember()
    member.contact.id = "0190aaaa-0000-7000-8000-000000000001"
    member.contact.first_name = "Ada"
    member.contact.identities.add(kind="IDENTITY_KIND_PHONE", value="+33600000000")
    member.contact.identities.add(kind="IDENTITY_KIND_EMAIL", value="ada@example.com")
    if custom:
        s = Struct()
        s.update(custom)
        member.contact.custom_fields.CopyFrom(s)
    for channel, purpose, status, minute in consents:
        c = member.consents.add(channel=channel, purpose=purpose, status=status)
        c.at.FromDatetime(NOW + timedelta(minutes=minute))
    return member


def test_only_the_latest_email_marketing_consent_counts() -> None:
    assert not email_consent(_member([]).consents)
    assert email_consent(_member([("email", "marketing", "granted", 0)]).consents)
    assert not email_consent(_member([("email", "marketing", "granted", 0),
                                      ("email", "marketing", "withdrawn", 5)]).consents)
    assert not email_consent(_member([("sms", "marketing", "granted", 0),
                                      ("email", "transactional", "granted", 0)]).consents)


def test_a_member_maps_to_its_email_and_time_zone() -> None:
    r = recipient_of(_member([("email", "marketing", "granted", 0)], {"time_zone": "Asia/Tokyo"}))
    assert (r.email, r.marketing_consent, r.time_zone, r.contact["first_name"]) == (
        "ada@example.com", True, "Asia/Tokyo", "Ada")


def test_delivery_statuses_only_move_forward() -> None:
    assert advances("queued", "sent")
    assert advances("sent", "delivered")
    assert advances("delivered", "bounced")
    assert not advances("delivered", "sent")
    assert not advances("bounced", "delivered")


def test_suppression_hashes_ignore_case_and_spaces() -> None:
    assert address_hash(" Ada@Example.COM ") == address_hash("ada@example.com")
