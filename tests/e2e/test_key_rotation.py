"""End to end: rotating the signing key of a live ``centrali serve`` with the CLI, private keys
encrypted under a master key. No restart, no token refused on the way. (Each worker rereads
the keys on its own, so one worker shows it; ``test_serve`` covers ``--workers 2``.)"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import select

from centrali.store.db import Database
from centrali.store.tables import SigningKeyRow
from tests.e2e.conftest import Launch, Server, base_env, cli_inproc, free_port, run_cli

pytestmark = pytest.mark.e2e

MASTER = base64.b64encode(bytes(range(32))).decode()
ADMIN = "admin@acme-corp.test"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"
STRUCTURES = "/workspace/acme-corp/api/v1/structures"
LEAD_TIME = 5  # seconds: room for the checks made while the new key is pending


@pytest.fixture(params=["sqlite", "postgres"])
def rotation_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A fresh store, a master key, short-lived tokens and workers rereading keys every 0.2 s."""
    env = base_env(
        CENTRALI_DATA_DIR=str(tmp_path / "data"),
        CENTRALI_MASTER_KEY=MASTER,
        CENTRALI_TOKEN_TTL="60",
        CENTRALI_KEY_REFRESH_SECONDS="0.2",
    )
    if request.param == "postgres":
        env["CENTRALI_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    return env


def database_url(env: dict[str, str]) -> str:
    return env.get("CENTRALI_DATABASE_URL") or f"sqlite:///{env['CENTRALI_DATA_DIR']}/centrali.db"


def stored_private_keys(env: dict[str, str]) -> list[str]:
    db = Database(database_url(env))
    try:
        with db.read() as session:
            return list(session.scalars(select(SigningKeyRow.private_pem)))
    finally:
        db.dispose()


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def on_new_connections(
    server: Server, check: Callable[[httpx.Client], bool], times: int = 8
) -> bool:
    """``check`` holds on ``times`` new connections in a row (with ``--workers N`` the kernel
    spreads new connections over the workers)."""
    for _ in range(times):
        with server.client() as http:
            if not check(http):
                return False
    return True


def published(http: httpx.Client) -> set[str]:
    r = http.get("/oidc/jwks")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=300"
    return {k["kid"] for k in r.json()["keys"]}


def new_token(http: httpx.Client, account: dict[str, str]) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": account["clientId"],
        "client_secret": account["clientSecret"],
    }
    r = http.post("/oidc/token", data=form)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def api_status(http: httpx.Client, token: str) -> int:
    return http.get(STRUCTURES, headers={"Authorization": f"Bearer {token}"}).status_code


def test_rotation_on_a_live_server(rotation_env: dict[str, str], launch: Launch) -> None:
    env = rotation_env
    (server,) = launch(env)
    (first_pem,) = stored_private_keys(env)
    assert first_pem.startswith("enc:v1:") and "PRIVATE KEY" not in first_pem

    cli_inproc(env, "bootstrap", "--workspace", "acme-corp", "--admin", ADMIN)
    admin = cli_inproc(env, "user", "token", ADMIN, "--workspace", "acme-corp").strip()
    with server.client() as http:
        r = http.post(ACCOUNTS, headers={"Authorization": f"Bearer {admin}"}, json={"name": "A"})
        assert r.status_code == 201, r.text
        account = r.json()
        token_a = new_token(http, account)
    old = kid_of(token_a)

    # The new key is published at the next reread, and does not sign yet.
    rotated_at = time.monotonic()
    # In-process (a new interpreter may take seconds to start on a busy machine).
    new = cli_inproc(env, "keys", "rotate", "--lead-time", str(LEAD_TIME)).strip()
    eventually(lambda: on_new_connections(server, lambda http: published(http) == {old, new}))
    with server.client() as http:
        token_b = new_token(http, account)
    assert kid_of(token_b) == old
    assert time.monotonic() - rotated_at < LEAD_TIME, "too slow to see the key pending"
    states = [line.split("\t")[:4] for line in cli_inproc(env, "keys", "list").splitlines()]
    assert states == [[new, "RS256", "2", "pending"], [old, "RS256", "1", "active"]]

    # From its activation it signs; the old key's tokens still pass.
    eventually(
        lambda: on_new_connections(server, lambda http: kid_of(new_token(http, account)) == new)
    )
    assert on_new_connections(server, lambda http: api_status(http, token_a) == 200)
    assert on_new_connections(server, lambda http: api_status(http, token_b) == 200)
    states = [line.split("\t")[:4] for line in cli_inproc(env, "keys", "list").splitlines()]
    assert states == [[new, "RS256", "2", "active"], [old, "RS256", "1", "superseded"]]
    assert all(p.startswith("enc:v1:") for p in stored_private_keys(env))

    # Retiring it is refused while its tokens may be alive.
    result = run_cli(env, "keys", "retire", old)
    assert result.returncode == 1 and result.stdout == "", result
    (line,) = result.stderr.strip().splitlines()
    assert f"signing key {old} may have signed tokens valid until" in line, line

    # Forced, the old key goes without a restart.
    assert cli_inproc(env, "keys", "retire", old, "--force") == f"{old}\n"
    eventually(lambda: on_new_connections(server, lambda http: published(http) == {new}))
    assert on_new_connections(server, lambda http: api_status(http, token_a) == 401)
    with server.client() as http:
        assert api_status(http, new_token(http, account)) == 200
    assert MASTER not in server.log_text()


def test_serve_refuses_a_master_key_that_does_not_open_the_keys(tmp_path: Path) -> None:
    env = base_env(CENTRALI_DATA_DIR=str(tmp_path / "data"), CENTRALI_MASTER_KEY=MASTER)
    # The store and its key, encrypted (`keys list` only reads: bootstrap makes the store).
    cli_inproc(env, "bootstrap", "--workspace", "acme-corp", "--admin", ADMIN)
    env["CENTRALI_MASTER_KEY"] = wrong = base64.b64encode(bytes(32)).decode()
    result = run_cli(env, "serve", "--port", str(free_port()))
    assert result.returncode == 2, result
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: CENTRALI_MASTER_KEY does not decrypt signing key"), line
    assert MASTER not in result.stderr and wrong not in result.stderr
