"""The partners API's credentials: a workspace user's bearer token (crmkit) or a partner API
key (``crmpk_...``) in ``X-API-Key`` or as the bearer token, looked up in this service's store.

``caller(scope)`` is the FastAPI dependency every route uses: 401 problem+json without valid
credentials, 403 without the scope. ``partner_scope`` names the scope a partner's key needs
instead, on routes where a partner acts on its own things and a workspace user needs
``scope`` (for example ``caller("partners:admin", partner_scope="subscriptions:write")``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from crm_partners.api.caller import Caller
from crm_partners.domain.accounts import KEY_PREFIX
from crm_partners.service.accounts import Accounts
from crmkit.auth import AuthError, authenticator
from crmkit.problems import Forbidden, Unauthorized
from crmkit.web import state

_accounts = state("accounts", Accounts)


def caller(scope: str, *, partner_scope: str | None = None) -> Callable[[Request], Awaitable[Caller]]:
    async def dependency(request: Request) -> Caller:
        found = await _authenticate(request)
        needed = partner_scope if found.partner_id is not None and partner_scope else scope
        if not found.allows(needed):
            raise Forbidden(f"this credential lacks the scope {needed}")
        return found

    return dependency


async def _authenticate(request: Request) -> Caller:
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if api_key is None and authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip().startswith(KEY_PREFIX):
            api_key = token.strip()
    if api_key is not None and api_key.startswith(KEY_PREFIX):
        partner = await _accounts(request).authenticate(api_key)
        if partner is None:
            raise Unauthorized("unknown, revoked or expired API key, or a suspended partner")
        return partner
    try:
        principal = authenticator(request).from_headers(authorization, api_key)
    except AuthError as exc:
        raise Unauthorized(str(exc)) from exc
    return Caller(principal.workspace_id, principal.subject, principal.scopes)
