"""Who is calling the partners API: a workspace's user (its admins manage partners) or a
partner, by its API key. Both are scoped to one workspace; a partner also to itself."""

from __future__ import annotations

from dataclasses import dataclass

# Scopes of partner API keys. A workspace user needs `partners:admin` (admins have every scope)
# to manage partners, or `events:read` to read the feed.
PARTNER_SCOPES = frozenset({"events:read", "subscriptions:write", "deliveries:replay"})


@dataclass(frozen=True)
class Caller:
    workspace_id: str
    subject: str
    scopes: frozenset[str]
    # Set when the caller is a partner (an API key): it sees only its own partner's things.
    partner_id: str | None = None

    def allows(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes

    def sees(self, partner_id: str) -> bool:
        """Whether this caller may see the partner's accounts, subscriptions and deliveries."""
        return self.partner_id is None or self.partner_id == partner_id
