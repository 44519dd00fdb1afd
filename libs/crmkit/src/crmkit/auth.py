"""Authentication: bearer JWTs (HS256 locally, RS256/ES256 through a JWKS) and hashed API keys.

Every principal belongs to exactly one workspace; every query, event and call a service
makes on its behalf is scoped to that workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request

from crmkit.problems import Forbidden, Unauthorized
from crmkit.settings import InfraSettings

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    # interactions:files downloads attachments; interactions:raw (the raw payloads as the
    # providers sent them) is for admins and explicitly scoped API keys only.
    # pipeline:read/pipeline:write are deals, activities, the board and the forecast;
    # pipeline:admin (pipelines and their stages, the base currency, exchange rates, close
    # reasons, deal fields, sales teams, the lead scoring model) is for admins only.
    "sales": frozenset({"contacts:read", "contacts:write", "pipeline:read", "pipeline:write",
                        "interactions:read", "interactions:files"}),
    "support": frozenset({"contacts:read", "tickets:read", "tickets:write", "kb:write", "interactions:read",
                          "interactions:files", "pipeline:read"}),
    "marketing": frozenset({"contacts:read", "campaigns:read", "campaigns:write"}),
    "analyst": frozenset({"contacts:read", "pipeline:read", "tickets:read", "campaigns:read",
                          "interactions:read"}),
    "partner": frozenset({"events:read"}),
    # Channel adapters and integrations that push inbound messages.
    "integration": frozenset({"interactions:write"}),
    # Services calling each other on behalf of a workspace.
    "service": frozenset({"internal"}),
}

_ALLOWED_ALGORITHMS = ["HS256", "RS256", "ES256"]


class AuthError(Exception):
    """The credentials are missing, malformed, expired or not ours."""


@dataclass(frozen=True)
class Principal:
    subject: str
    workspace_id: str
    scopes: frozenset[str]
    kind: Literal["user", "api_key", "service"]

    def allows(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def scopes_for(roles: Iterable[str], scopes: Iterable[str] = ()) -> frozenset[str]:
    granted: set[str] = set(scopes)
    for role in roles:
        granted |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(granted)


def issue_token(
    secret: str,
    *,
    subject: str,
    workspace_id: str,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    ttl_seconds: int = 3600,
    issuer: str = "crm",
    audience: str = "crm",
    kind: str = "user",
) -> str:
    """An HS256 token: for local development, tests, and service-to-service calls."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "ws": workspace_id,
        "roles": list(roles),
        "scope": " ".join(sorted(scopes)),
        "kind": kind,
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": issuer,
        "aud": audience,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class Authenticator:
    def __init__(self, settings: InfraSettings) -> None:
        self._secret = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        self._api_keys = {entry.sha256: entry for entry in settings.api_keys}
        # In production people sign in through the identity provider (JWKS); the shared
        # HS256 secret signs only the short-lived tokens services mint for each other.
        self._hs256_users = settings.environment != "prod"

    def from_bearer(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256":
            key = self._secret
        elif alg in ("RS256", "ES256") and self._jwks is not None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWTError as exc:
                raise AuthError("unknown signing key") from exc
        else:
            raise AuthError("unsupported token algorithm")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=_ALLOWED_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError("invalid or expired token") from exc
        workspace = claims.get("ws")
        if not isinstance(workspace, str) or not workspace:
            raise AuthError("token carries no workspace")
        scope_claim = claims.get("scope", "")
        scopes = scope_claim.split() if isinstance(scope_claim, str) else []
        kind: Literal["user", "service"] = "service" if claims.get("kind") == "service" else "user"
        if alg == "HS256" and kind == "user" and not self._hs256_users:
            raise AuthError("sign in through the identity provider")
        return Principal(
            subject=str(claims["sub"]),
            workspace_id=workspace,
            scopes=scopes_for(claims.get("roles") or [], scopes),
            kind=kind,
        )

    def from_api_key(self, key: str) -> Principal:
        digest = hash_api_key(key)
        for known, entry in self._api_keys.items():
            if hmac.compare_digest(known, digest):
                return Principal(entry.name, entry.workspace_id, frozenset(entry.scopes), "api_key")
        raise AuthError("unknown API key")

    def from_headers(self, authorization: str | None, api_key: str | None) -> Principal:
        if api_key:
            return self.from_api_key(api_key)
        if not authorization:
            raise AuthError("missing credentials")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("expected a bearer token")
        return self.from_bearer(token.strip())

    def service_token(self, service: str, workspace_id: str, ttl_seconds: int = 300) -> str:
        return issue_token(
            self._secret,
            subject=f"service:{service}",
            workspace_id=workspace_id,
            roles=["service"],
            ttl_seconds=ttl_seconds,
            issuer=self._issuer,
            audience=self._audience,
            kind="service",
        )


def authenticator(request: Request) -> Authenticator:
    auth = request.app.state.authenticator
    assert isinstance(auth, Authenticator)
    return auth


def require(scope: str) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller, authenticated and allowed ``scope``."""

    def dependency(request: Request, auth: Annotated[Authenticator, Depends(authenticator)]) -> Principal:
        try:
            principal = auth.from_headers(
                request.headers.get("authorization"), request.headers.get("x-api-key")
            )
        except AuthError as exc:
            raise Unauthorized(str(exc)) from exc
        if not principal.allows(scope):
            raise Forbidden(f"this credential lacks the scope {scope}")
        return principal

    return dependency
