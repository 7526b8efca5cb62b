"""End to end: a token revoked (RFC 7009) through one ``centrali serve`` is refused at once by
every other server and worker sharing the store, and introspects as inactive there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Launch, Server, base_env, cli_inproc

pytestmark = pytest.mark.e2e

ADMIN = "admin@acme-corp.test"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"
STRUCTURES = "/workspace/acme-corp/api/v1/structures"
TOKEN_REVOKED = {"error": "token_revoked", "message": "Token revoked"}


@pytest.fixture(params=["sqlite", "postgres"])
def shared_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """One store behind one configured issuer, for several servers (as behind a balancer)."""
    env = base_env(
        CENTRALI_DATA_DIR=str(tmp_path / "shared"),
        CENTRALI_ISSUER="https://auth.centrali.localhost",
        CENTRALI_FORWARDED_ALLOW_IPS="127.0.0.1",  # the balancer, on this host
    )
    if request.param == "postgres":
        env["CENTRALI_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    return env


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def access_token(http: httpx.Client, account: dict[str, Any]) -> str:
    r = http.post(
        "/oidc/token",
        data={"grant_type": "client_credentials", "scope": "openid"},
        auth=(account["clientId"], account["clientSecret"]),
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def as_client(account: dict[str, Any], token: str) -> dict[str, str]:
    return {
        "client_id": account["clientId"],
        "client_secret": account["clientSecret"],
        "token": token,
    }


def fresh_connections(server: Server, count: int) -> list[httpx.Client]:
    """A new connection each, so the kernel may hand each to any of the server's workers."""
    return [server.client() for _ in range(count)]


def test_a_revoked_jti_is_refused_by_every_server_and_worker(
    shared_env: dict[str, str], launch: Launch
) -> None:
    (server_a,) = launch(shared_env)
    (server_b,) = launch(shared_env, extra=("--workers", "2"))
    cli_inproc(shared_env, "bootstrap", "--workspace", "acme-corp", "--admin", ADMIN)
    admin = cli_inproc(shared_env, "user", "token", ADMIN, "--workspace", "acme-corp").strip()

    with server_a.client() as a, server_b.client() as b:
        r = a.post(ACCOUNTS, headers=bearer(admin), json={"name": "Revoking Client"})
        assert r.status_code == 201, r.text
        account = r.json()
        token = access_token(b, account)  # minted by B
        kept = access_token(a, account)
        for http in (a, b):
            assert http.get(STRUCTURES, headers=bearer(token)).status_code == 200

        # Revoked through A...
        r = a.post("/oidc/revoke", data=as_client(account, token))
        assert (r.status_code, r.content) == (200, b""), r.text

        # ...refused by A, by B (whichever worker answers) and inactive everywhere, at once.
        r = a.get(STRUCTURES, headers=bearer(token))
        assert (r.status_code, r.json()) == (401, TOKEN_REVOKED)
        for http in (a, b):
            r = http.post("/oidc/introspect", data=as_client(account, token))
            assert r.json() == {"active": False}, r.text
            assert http.post("/oidc/introspect", data=as_client(account, kept)).json()["active"]

    for http in fresh_connections(server_b, 8):
        with http:
            r = http.get(STRUCTURES, headers=bearer(token))
            assert (r.status_code, r.json()) == (401, TOKEN_REVOKED)
            # Only that jti: the account's other token still works on every worker.
            assert http.get(STRUCTURES, headers=bearer(kept)).status_code == 200
