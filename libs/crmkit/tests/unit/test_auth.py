import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from crmkit.auth import Authenticator, AuthError, hash_api_key, issue_token
from crmkit.settings import ApiKeyEntry, InfraSettings

SECRET = "s" * 40


def settings(**kw: object) -> InfraSettings:
    return InfraSettings(jwt_secret=SECRET, **kw)  # type: ignore[arg-type]


def test_a_local_token_gives_its_workspace_and_the_scopes_of_its_roles() -> None:
    token = issue_token(SECRET, subject="u1", workspace_id="acme", roles=["support"])
    principal = Authenticator(settings()).from_headers(f"Bearer {token}", None)
    assert principal.workspace_id == "acme"
    assert principal.subject == "u1"
    assert principal.allows("tickets:write")
    assert not principal.allows("campaigns:write")


def test_admin_is_allowed_every_scope() -> None:
    token = issue_token(SECRET, subject="u1", workspace_id="acme", roles=["admin"])
    assert Authenticator(settings()).from_bearer(token).allows("anything:at-all")


@pytest.mark.parametrize(
    "token",
    [
        issue_token(SECRET, subject="u", workspace_id="acme", ttl_seconds=-10),  # expired
        issue_token("x" * 40, subject="u", workspace_id="acme"),  # signed with another key
        issue_token(SECRET, subject="u", workspace_id="acme", audience="other"),
        issue_token(SECRET, subject="u", workspace_id=""),  # no workspace
        jwt.encode({"sub": "u", "ws": "acme", "exp": int(time.time()) + 60, "iss": "crm",
                    "aud": "crm"}, key=None, algorithm="none"),
        "not-a-token",
    ],
    ids=["expired", "wrong-key", "wrong-audience", "no-workspace", "alg-none", "garbage"],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthError):
        Authenticator(settings()).from_bearer(token)


def test_missing_or_non_bearer_credentials_are_refused() -> None:
    auth = Authenticator(settings())
    with pytest.raises(AuthError, match="missing"):
        auth.from_headers(None, None)
    with pytest.raises(AuthError, match="bearer"):
        auth.from_headers("Basic dXNlcjpwYXNz", None)


def test_api_keys_are_matched_by_their_hash_only() -> None:
    entry = ApiKeyEntry(name="shop", sha256=hash_api_key("crm_live_abc"), workspace_id="acme",
                        scopes=["interactions:write"])
    auth = Authenticator(settings(api_keys=[entry]))
    principal = auth.from_headers(None, "crm_live_abc")
    assert (principal.workspace_id, principal.kind) == ("acme", "api_key")
    assert principal.allows("interactions:write")
    with pytest.raises(AuthError):
        auth.from_headers(None, "crm_live_abd")


@pytest.mark.parametrize("secret", ["changeme", "short-secret", "secret"])
def test_a_weak_or_default_secret_stops_the_service_at_start(secret: str) -> None:
    with pytest.raises(ValidationError, match="CRM_JWT_SECRET"):
        InfraSettings(jwt_secret=secret)  # type: ignore[arg-type]


def test_a_missing_secret_stops_the_service_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="jwt_secret"):
        InfraSettings()  # type: ignore[call-arg]


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json", key
    server.shutdown()


def test_identity_provider_tokens_are_verified_against_the_jwks(
    jwks_server: tuple[str, ec.EllipticCurvePrivateKey],
) -> None:
    url, key = jwks_server
    claims = {"sub": "idp-user", "ws": "acme", "roles": ["sales"], "iss": "crm", "aud": "crm",
              "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
    principal = Authenticator(settings(jwt_jwks_url=url)).from_bearer(token)
    assert principal.workspace_id == "acme"
    assert principal.allows("pipeline:write")
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, other, algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(AuthError):
        Authenticator(settings(jwt_jwks_url=url)).from_bearer(forged)


def test_in_production_the_shared_secret_signs_only_service_tokens() -> None:
    auth = Authenticator(settings(environment="prod"))
    user = issue_token(SECRET, subject="u1", workspace_id="acme", roles=["admin"])
    with pytest.raises(AuthError, match="identity provider"):
        auth.from_bearer(user)
    assert auth.from_bearer(auth.service_token("ingest", "acme")).kind == "service"
