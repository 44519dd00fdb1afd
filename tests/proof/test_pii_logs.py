"""No personal data in the logs: workspace B's person wrote in by email (SMTP), chat and
WhatsApp, and was made a contact through the API (_seed.py); once every consumer has handled
those interactions, no service's log holds their email addresses or phone number, in any of
the forms they travel in (as typed, lower-cased, URL-encoded, a phone without its '+')."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import httpx
import pytest

from crmkit.testing import eventually

from ..e2e.conftest import WAIT
from ._platform import WORKSPACE_B, Proof
from ._seed import Seeds

pytestmark = pytest.mark.e2e

# Each channel's message is one interaction on the person's contact: email, chat, WhatsApp.
INTERACTIONS = 3


def forms(seeds: Seeds) -> set[str]:
    found: set[str] = set()
    for value in [*seeds.emails, *seeds.phones]:
        found |= {value, quote(value, safe=""), quote_plus(value), value.removeprefix("+")}
    return {form.lower() for form in found}


async def test_no_service_log_holds_the_emails_or_phones_of_the_people_it_handled(
    proof: Proof, seeds: Seeds,
) -> None:
    contact_id = seeds.ids["contacts"]["contact_id"]
    reader = proof.headers(WORKSPACE_B)

    # The last consumers of the interaction stream have counted all three messages.
    async def counted(service: str, path: str) -> bool:
        async with httpx.AsyncClient(base_url=proof.platform.url(service), timeout=30) as http:
            answer = await http.get(path.format(contact_id=contact_id), headers=reader)
        return answer.status_code == 200 and answer.json()["interaction_count"] >= INTERACTIONS

    await eventually(lambda: counted("pipeline", "/v1/contacts/{contact_id}/activity"), timeout=WAIT,
                     what="pipeline to count the person's messages")
    await eventually(lambda: counted("campaigns", "/v1/contacts/{contact_id}/engagement"), timeout=WAIT,
                     what="campaigns to count the person's messages")

    logs = sorted(proof.log_dir.glob("*.log"))
    assert logs, f"no service logs under {proof.log_dir}"
    needles = forms(seeds)
    leaks = []
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            if any(needle in line.lower() for needle in needles):
                leaks.append(f"{log.name}:{number}: {line[:300]}")
    assert not leaks, "personal data in the logs:\n" + "\n".join(leaks[:20])
