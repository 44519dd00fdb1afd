"""Write or check the committed event catalogue.

    python -m crm_partners.catalogue            # write docs/events/asyncapi.json
    python -m crm_partners.catalogue --check    # fail when it is stale or breaks the baseline
    python -m crm_partners.catalogue --accept-breaking   # also make it the new baseline

The baseline (``docs/events/asyncapi.baseline.json``) is the contract partners were given: a
change that breaks it fails the check (and the unit tests). Accept one only together with a
new topic and event type version, in a change reviewers see.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crm_partners.domain.catalogue import asyncapi, breaking_changes

DOCS = Path(__file__).resolve().parents[4] / "docs" / "events"
DOCUMENT = DOCS / "asyncapi.json"
BASELINE = DOCS / "asyncapi.baseline.json"


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_partners.catalogue",
                                     description="Write or check the committed event catalogue.")
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument("--accept-breaking", action="store_true", help="write the baseline too")
    args = parser.parse_args(argv)
    document = asyncapi()
    breaking = breaking_changes(json.loads(BASELINE.read_text()), document) if BASELINE.exists() else []
    if args.check:
        problems = [f"breaking: {b}" for b in breaking]
        if not DOCUMENT.exists() or DOCUMENT.read_text() != render(document):
            problems.append(f"{DOCUMENT} is stale: run python -m crm_partners.catalogue")
        print("\n".join(problems) or "the event catalogue is current and compatible")
        return 1 if problems else 0
    if breaking and not args.accept_breaking:
        print("\n".join(f"breaking: {b}" for b in breaking), file=sys.stderr)
        print("publish the change as a new topic/event type version, then --accept-breaking", file=sys.stderr)
        return 1
    DOCUMENT.write_text(render(document))
    if args.accept_breaking or not BASELINE.exists():
        BASELINE.write_text(render(document))
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
