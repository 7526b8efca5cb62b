"""No secret, secret hash or token in a log line or anywhere in the store (contract:
"Operations and security"; STYLE: "never log a secret or a token, not even at debug").

A real ``centrali serve`` at log level debug is driven through everything that handles
credentials: create, rotate twice, good and wrong token requests (form, Basic, JSON, query
string, repeated parameters), revoked and deleted accounts, API calls with live and dead
tokens, the audit API and CLI. Then its whole stdout and stderr, and every column of every
table except the ones that must hold key material (``service_account_secrets.secret_hash``,
its copy for the token endpoint ``service_accounts.secrets``, ``signing_keys.private_pem``),
are searched for every credential seen on the way.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, select, text

from centrali.oauth.credentials import hash_secret
from centrali.store.db import normalize_url
from tests.e2e.conftest import Launch, Server, base_env, cli_inproc, stop

pytestmark = pytest.mark.e2e

WS = "acme-corp"
ADMIN = "admin@acme-corp.test"
ACCOUNTS = f"/workspace/{WS}/api/v1/service-accounts"
# The only places credential material may live.
KEY_COLUMNS = {
    ("service_account_secrets", "secret_hash"),
    ("service_accounts", "secrets"),
    ("signing_keys", "private_pem"),
}


@dataclass
class Needles:
    """Everything that must never show up, by kind, for a readable failure."""

    found: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str) -> None:
        assert len(value) >= 16, (kind, value)  # long enough to never match by chance
        self.found.setdefault(kind, set()).add(value)

    def secret(self, value: str, kind: str = "client secret") -> None:
        self.add(kind, value)
        if value.startswith("sk_"):
            self.add(kind, value.removeprefix("sk_"))
        stored = hash_secret(value)
        self.add("secret hash", stored)
        self.add("secret hash", stored.partition("$")[2])

    def token(self, value: str, kind: str = "access token") -> None:
        self.add(kind, value)
        self.add(f"{kind} signature", value.rsplit(".", 1)[1])

    def hits(self, haystack: str) -> list[tuple[str, str]]:
        return [
            (kind, value)
            for kind, values in sorted(self.found.items())
            for value in sorted(values)
            if value in haystack
        ]


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    settings = {"CENTRALI_DATA_DIR": str(tmp_path / "data"), "CENTRALI_LOG_LEVEL": "debug"}
    if request.param == "postgres":
        settings["CENTRALI_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    yield base_env(**settings)


def token_form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def wrong_secret() -> str:
    return "sk_" + secrets.token_hex(32)


def drive(server: Server, user_token: str, needles: Needles) -> str:
    """Every credential-handling path once or more; returns the clientId of a live account
    (to check the dump is real)."""
    admin = {"Authorization": f"Bearer {user_token}"}
    with server.client() as http:

        def call(method: str, path: str, body: Any = None, ok: int = 200) -> Any:
            r = http.request(method, path, json=body, headers=admin)
            assert r.status_code == ok, (method, path, r.status_code, r.text)
            return r.json() if r.content else None

        def good_token(client_id: str, secret: str, **kwargs: Any) -> str:
            r = http.post("/oidc/token", **kwargs)
            assert r.status_code == 200, r.text
            token: str = r.json()["access_token"]
            needles.token(token)
            return token

        def refused(r: httpx.Response, status: int = 401) -> None:
            assert r.status_code == status, r.text

        a = call("POST", ACCOUNTS, {"name": "Production API Client", "scope": "openid"}, 201)
        b = call("POST", ACCOUNTS, {"name": "Second", "groups": ["workspace-admins"]}, 201)
        for account in (a, b):
            needles.secret(account["clientSecret"])
        a_id, first = a["id"], a["clientSecret"]
        a_client: str = a["clientId"]

        token_a = good_token(a_client, first, data=token_form(a_client, first))
        good_token(
            a_client,
            first,
            data={"grant_type": "client_credentials"},
            headers=basic(a_client, first),
        )
        r = http.get(
            f"/workspace/{WS}/api/v1/structures", headers={"Authorization": f"Bearer {token_a}"}
        )
        assert r.status_code == 200, r.text

        # Rotate twice; the old secrets are now wrong secrets.
        second = call("POST", f"{ACCOUNTS}/{a_id}/rotate")["clientSecret"]
        needles.secret(second)
        third = call("POST", f"{ACCOUNTS}/{a_id}/rotate", {"revokeTokens": True})["clientSecret"]
        needles.secret(third)
        for old in (first, second):
            refused(http.post("/oidc/token", data=token_form(a_client, old)))
        refused(
            http.get(
                f"/workspace/{WS}/api/v1/structures", headers={"Authorization": f"Bearer {token_a}"}
            )
        )  # killed by revokeTokens
        token_a3 = good_token(a_client, third, data=token_form(a_client, third))

        # Wrong secrets, every way they can arrive.
        tried = [wrong_secret() for _ in range(6)] + ["not-the-secret-" + secrets.token_hex(8)]
        for secret in tried:
            needles.secret(secret, "wrong secret")
        refused(http.post("/oidc/token", data=token_form(a_client, tried[0])))
        refused(
            http.post(
                "/oidc/token",
                data={"grant_type": "client_credentials"},
                headers=basic(a_client, tried[1]),
            )
        )
        refused(http.post("/oidc/token", data=token_form("ci_" + "x" * 20, tried[2])))
        refused(http.post("/oidc/token", data=token_form("", tried[6])), 401)
        refused(http.post("/oidc/token", json=token_form(a_client, tried[3])), 400)  # not a form
        refused(
            http.post(
                "/oidc/token",
                content=f"grant_type=client_credentials&client_id={a_client}"
                f"&client_secret={tried[4]}&client_secret={tried[4]}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
            400,
        )
        # Against RFC 6749 §2.3.1, in the query string: still never logged.
        r = http.post(
            "/oidc/token",
            params=token_form(a_client, tried[5]),
            data={"grant_type": "client_credentials"},
        )
        assert r.status_code in (400, 401), r.text
        # A secret where a bearer token belongs.
        refused(http.get(f"{ACCOUNTS}", headers={"Authorization": f"Bearer {tried[0]}"}))
        refused(http.get(f"{ACCOUNTS}", headers={"Authorization": f"Basic {tried[1]}"}))

        # Management calls on the second account; its tokens die with it.
        b_id, b_client, b_secret = b["id"], b["clientId"], b["clientSecret"]
        token_b = good_token(b_client, b_secret, data=token_form(b_client, b_secret))
        refused(http.get(ACCOUNTS, headers={"Authorization": f"Bearer {token_b}"}), 403)
        call("PUT", f"{ACCOUNTS}/{b_id}/name", {"name": "Renamed"})
        call("PUT", f"{ACCOUNTS}/{b_id}/description", {"description": "described"})
        call("PUT", f"{ACCOUNTS}/{b_id}/groups", {"groups": ["developers"]})
        call("POST", f"{ACCOUNTS}/{b_id}/revoke")
        refused(http.post("/oidc/token", data=token_form(b_client, b_secret)))
        refused(
            http.get(
                f"/workspace/{WS}/api/v1/structures", headers={"Authorization": f"Bearer {token_b}"}
            )
        )
        call("POST", f"{ACCOUNTS}/{b_id}/activate")
        call("DELETE", f"{ACCOUNTS}/{b_id}", ok=204)
        refused(http.post("/oidc/token", data=token_form(b_client, b_secret)))
        refused(
            http.get(
                f"/workspace/{WS}/api/v1/structures", headers={"Authorization": f"Bearer {token_b}"}
            )
        )
        call("GET", ACCOUNTS)
        call("GET", f"{ACCOUNTS}/{a_id}")

        # Token endpoints of the operations contract, where present: with live credentials.
        for path in ("/oidc/introspect", "/oidc/revoke"):
            http.post(path, data={"token": token_a3, **token_form(a_client, third)})

        # The audit API answers without any of it.
        events = call("GET", f"/workspace/{WS}/api/v1/audit-events", None)
        failures = call("GET", f"/workspace/{WS}/api/v1/audit-events/token-failures")
        answers = json.dumps([events, failures])
        assert events["total"] >= 9
        assert needles.hits(answers) == []
    return a_client


def dump_store(url: str) -> tuple[str, list[str]]:
    """Every value of every column of every table but KEY_COLUMNS, as text; and the secret
    hashes the store holds now."""
    engine = create_engine(normalize_url(url))
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        parts: list[str] = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                columns = [c for c in table.columns if (table.name, c.name) not in KEY_COLUMNS]
                for row in conn.execute(select(*columns)):
                    parts.append(json.dumps([table.name, *map(_text, row)]))
            hashes = [
                h for (h,) in conn.execute(text("SELECT secret_hash FROM service_account_secrets"))
            ]
        return "\n".join(parts), hashes
    finally:
        engine.dispose()


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime | date | Decimal):
        return str(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def test_no_secret_hash_or_token_in_logs_or_store(launch: Launch, env: dict[str, str]) -> None:
    needles = Needles()
    cli_inproc(env, "bootstrap", "--workspace", WS, "--admin", ADMIN)
    (server,) = launch(env)
    user_token = cli_inproc(server.env, "user", "token", ADMIN, "--workspace", WS).strip()
    needles.token(user_token, "user token")

    live_client = drive(server, user_token, needles)
    audit_out = cli_inproc(server.env, "audit", "list", "--workspace", WS, "--limit", "100")
    failures_out = cli_inproc(server.env, "audit", "failures", "--limit", "100")
    stop(server)

    database_url = env.get("CENTRALI_DATABASE_URL") or (
        f"sqlite:///{Path(env['CENTRALI_DATA_DIR']).resolve() / 'centrali.db'}"
    )
    dump, stored_hashes = dump_store(database_url)
    assert len(stored_hashes) == 1  # the live account; the deleted one's hash is wiped
    # The hash the store holds is one we derived from a secret we were given, so the hash
    # needles are the right ones (and would catch a copy of it anywhere else).
    assert set(stored_hashes) <= needles.found["secret hash"]

    log = server.log_text()
    # The searches are not vacuous: the log has the server's lines, the dump the accounts.
    assert "serving on" in log and live_client in dump and "service_account.rotated" in dump
    assert len(needles.found["access token"]) >= 4 and len(needles.found["wrong secret"]) >= 7

    assert needles.hits(log) == [], "credential material in the server's log"
    assert needles.hits(dump) == [], "credential material in the store"
    assert needles.hits(audit_out + failures_out) == [], "credential material in audit output"
