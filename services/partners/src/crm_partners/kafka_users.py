"""Write the Strimzi KafkaUser of every partner of a workspace, one file per partner, for the
``deploy/k8s/components/partner-users/`` component:

    python -m crm_partners.kafka_users --workspace W [--dsn postgresql://...] [--out DIR]

Each file is ``partner-<partner id>.json`` (JSON is YAML: kubectl and kustomize read it). The
DSN defaults to the partners service's own database from its settings (PARTNERS_*, CRM_*).
Files of the workspace's partners that no longer exist are removed (each file is labelled with
its workspace), so one folder holds every workspace's users.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg

from crm_partners.domain.accounts import Partner
from crm_partners.domain.kafka_users import WORKSPACE_LABEL, kafka_user, user_name, workspace_label
from crm_partners.settings import Settings
from crm_partners.store.accounts import AccountsStore

_PAGE = 500


async def kafka_users(dsn: str, workspace_id: str) -> dict[str, dict[str, Any]]:
    """Every partner's KafkaUser, by resource name."""
    conn = await asyncpg.connect(dsn)
    try:
        store = AccountsStore(conn)
        partners: list[Partner] = []
        while page := await store.partners(workspace_id, partners[-1].id if partners else None, _PAGE):
            partners.extend(page)
        subscriptions = await store.subscriptions(workspace_id, [p.id for p in partners])
    finally:
        await conn.close()
    return {user_name(partner): kafka_user(partner, subscriptions) for partner in partners}


def write_users(workspace_id: str, users: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """Writes the users and removes the files of this workspace's partners that are gone;
    other workspaces' files stay."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, user in users.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(user, indent=2) + "\n")
        written.append(path)
    label = workspace_label(workspace_id)
    for old in out.glob("partner-*.json"):
        if old not in written and _labels(old).get(WORKSPACE_LABEL) == label:
            old.unlink()
    return written


def _labels(path: Path) -> dict[str, Any]:
    try:
        labels = json.loads(path.read_text())["metadata"]["labels"]
    except (ValueError, KeyError, TypeError):
        return {}
    return labels if isinstance(labels, dict) else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crm_partners.kafka_users", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, help="the workspace whose partners to write")
    parser.add_argument("--dsn", help="the partners database (default: from the service's settings)")
    parser.add_argument("--out", type=Path, default=Path("."), help="the folder to write into")
    args = parser.parse_args(argv)
    settings = Settings()
    dsn = args.dsn or settings.infra.postgres_dsn_for(settings.database_name)
    for path in write_users(args.workspace, asyncio.run(kafka_users(dsn, args.workspace)), args.out):
        print(path)


if __name__ == "__main__":
    main()
