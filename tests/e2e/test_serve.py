"""End to end: real ``centrali serve`` processes, driven by the CLI, curl, requests and axios.

The guide's examples are replayed as printed, with only the host, the tokens and the
credentials swapped for the live ones.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.conftest import Launch, Server, base_env, cli_inproc, cli_ok

pytestmark = pytest.mark.e2e

# The guide's placeholders, as printed.
GUIDE_AUTH_URL = "https://auth.centrali.localhost"
GUIDE_BEARER = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9..."
GUIDE_CLIENT_ID = "ci_a1b2c3d4e5f6g7h8i9j0"
GUIDE_CLIENT_SECRET = "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

GUIDE_CREATE_CURL = [
    "curl",
    "-X",
    "POST",
    "https://auth.centrali.localhost/workspace/acme-corp/api/v1/service-accounts",
    "-H",
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9...",
    "-H",
    "Content-Type: application/json",
    "-d",
    """{
"name": "Production API Client",
"description": "Main service account for production API access",
"grant_types": ["client_credentials"],
"scope": "openid"
}""",
]

GUIDE_TOKEN_CURL = [
    "curl",
    "-X",
    "POST",
    "https://auth.centrali.localhost/oidc/token",
    "-H",
    "Content-Type: application/x-www-form-urlencoded",
    "-d",
    "grant_type=client_credentials",
    "-d",
    "client_id=ci_a1b2c3d4e5f6g7h8i9j0",
    "-d",
    "client_secret=sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "-d",
    "scope=openid",
]

GUIDE_PYTHON = """\
import requests
token_url = "https://auth.centrali.localhost/oidc/token"
payload = {
"grant_type": "client_credentials",
"client_id": "ci_a1b2c3d4e5f6g7h8i9j0",
"client_secret": "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
"scope": "openid"
}
response = requests.post(
token_url,
data=payload,
headers={"Content-Type": "application/x-www-form-urlencoded"}
)
token_data = response.json()
access_token = token_data["access_token"]
print(f"Access Token: {access_token}")
"""

GUIDE_NODE = """\
const axios = require('axios');
const qs = require('querystring');
const tokenUrl = 'https://auth.centrali.localhost/oidc/token';
const payload = {
grant_type: 'client_credentials',
client_id: 'ci_a1b2c3d4e5f6g7h8i9j0',
client_secret: 'sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
scope: 'openid'
};
axios.post(tokenUrl, qs.stringify(payload), {
headers: {
'Content-Type': 'application/x-www-form-urlencoded'
}
})
.then(response => {
const accessToken = response.data.access_token;
console.log('Access Token:', accessToken);
})
.catch(error => {
console.error('Error:', error.response?.data || error.message);
});
"""

CLIENT_ID_RE = re.compile(r"^ci_[a-z0-9]{20}$")
CLIENT_SECRET_RE = re.compile(r"^sk_[0-9a-f]{64}$")
JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client credentials"}
ADMIN = "admin@acme-corp.test"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"


def localize(text: str, base_url: str, **live: str) -> str:
    """The guide's text with its host and placeholders swapped for live values."""
    swaps = {
        GUIDE_AUTH_URL: base_url,
        GUIDE_BEARER: live.get("bearer", GUIDE_BEARER),
        GUIDE_CLIENT_ID: live.get("client_id", GUIDE_CLIENT_ID),
        GUIDE_CLIENT_SECRET: live.get("client_secret", GUIDE_CLIENT_SECRET),
    }
    for placeholder, value in swaps.items():
        text = text.replace(placeholder, value)
    assert GUIDE_AUTH_URL not in text
    return text


def run_curl(argv: list[str], workdir: Path) -> tuple[int, dict[str, str], Any]:
    """Run the guide's curl; only output flags are added, to read status, headers and body."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    headers_file, body_file = workdir / "curl-headers.txt", workdir / "curl-body.json"
    result = subprocess.run(
        [
            *argv,
            "--silent",
            "--show-error",
            "--dump-header",
            str(headers_file),
            "--output",
            str(body_file),
            "--write-out",
            "%{http_code}",
        ],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    headers = {}
    for line in headers_file.read_text().splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(result.stdout), headers, json.loads(body_file.read_bytes())


def bootstrap_admin(env: dict[str, str], run: Callable[..., str] = cli_inproc) -> str:
    """The guide's prerequisites through our CLI: workspace, admin, and the admin's token."""
    run(env, "bootstrap", "--workspace", "acme-corp", "--admin", ADMIN)
    out = run(env, "user", "token", ADMIN, "--workspace", "acme-corp")
    assert out.count("\n") == 1 and JWT_RE.match(out.strip()), out
    return out.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def request_token(http: httpx.Client, client_id: str, client_secret: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
        "scope": "openid",
    }
    return http.post("/oidc/token", data=form)


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == INVALID_CLIENT


def verify(token: str, http: httpx.Client) -> dict[str, Any]:
    """Claims of ``token`` checked against the JWKS and issuer the server at ``http`` publishes."""
    discovery = http.get("/.well-known/openid-configuration").json()
    # The JWKS of this very server, whatever host the configured issuer names.
    jwks = http.get(httpx.URL(discovery["jwks_uri"]).path).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        issuer=discovery["issuer"],
        audience=discovery["issuer"],
    )
    return claims


def assert_recent_utc(stamp: str) -> None:
    at = datetime.fromisoformat(stamp)
    assert at.utcoffset() == timedelta(0), stamp
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=5), stamp


def kids(http: httpx.Client) -> list[str]:
    jwks = http.get("/oidc/jwks").json()
    return sorted(k["kid"] for k in jwks["keys"])


def test_guide_examples_in_order(launch: Launch, store_env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("requests")  # the guide's Python snippet needs it
    (server,) = launch(store_env)
    base = server.base_url
    http = server.client()

    # Prerequisites: a workspace, a user in it, and that user's JWT, from `centrali` itself.
    user_token = bootstrap_admin(store_env, run=cli_ok)
    user_claims = verify(user_token, http)
    assert user_claims["isServiceAccount"] == "false"
    assert "workspace-admins" in user_claims["groups"]

    # Creating a Service Account (curl, as printed).
    status, _, created = run_curl(
        [localize(a, base, bearer=user_token) for a in GUIDE_CREATE_CURL], tmp_path
    )
    assert status == 201, created
    assert isinstance(created["id"], int) and not isinstance(created["id"], bool)
    assert CLIENT_ID_RE.match(created["clientId"]), created
    assert CLIENT_SECRET_RE.match(created["clientSecret"]), created
    assert created["name"] == "Production API Client"
    assert created["description"] == "Main service account for production API access"
    assert created["workspace"] == "acme-corp"
    assert created["grant_types"] == ["client_credentials"]
    assert created["scope"] == "openid"
    assert created["createdBy"] == user_claims["sub"]
    assert_recent_utc(created["createdAt"])
    account_id, client_id, secret = created["id"], created["clientId"], created["clientSecret"]
    live = {"client_id": client_id, "client_secret": secret}

    # Obtaining JWT Tokens: curl with its four -d flags.
    status, headers, body = run_curl(
        [localize(a, base, **live) for a in GUIDE_TOKEN_CURL], tmp_path
    )
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 25200
    assert body["scope"] == "openid"
    assert "refresh_token" not in body
    assert "no-store" in headers.get("cache-control", "")
    claims = verify(body["access_token"], http)
    assert claims["sub"] == client_id
    assert claims["iss"] == base
    assert claims["aud"] == base
    assert claims["exp"] - claims["iat"] == 25200
    assert claims["workspace"] == "acme-corp"
    assert claims["isServiceAccount"] == "true"
    assert claims["groups"] == ["api-users"]

    # Obtaining JWT Tokens: the Python snippet, run as printed.
    snippet = subprocess.run(
        [sys.executable, "-c", localize(GUIDE_PYTHON, base, **live)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert snippet.returncode == 0, snippet.stderr
    printed = snippet.stdout.strip()
    assert printed.startswith("Access Token: ey"), printed
    assert verify(printed.removeprefix("Access Token: "), http)["sub"] == client_id

    # Service Account Management: list, get, rename, describe.
    r = http.get(ACCOUNTS, headers=bearer(user_token))
    assert r.status_code == 200, r.text
    listing = r.json()
    assert (listing["page"], listing["limit"], listing["total"]) == (1, 20, 1)
    assert [a["clientId"] for a in listing["data"]] == [client_id]
    assert "clientSecret" not in listing["data"][0]
    assert secret not in r.text

    r = http.get(f"{ACCOUNTS}/{account_id}", headers=bearer(user_token))
    assert r.status_code == 200, r.text
    assert r.json()["clientId"] == client_id and r.json()["name"] == "Production API Client"
    assert "clientSecret" not in r.json() and secret not in r.text

    r = http.put(
        f"{ACCOUNTS}/{account_id}/name",
        headers=bearer(user_token),
        json={"name": "Updated Service Account Name"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Updated Service Account Name"

    r = http.put(
        f"{ACCOUNTS}/{account_id}/description",
        headers=bearer(user_token),
        json={"description": "Updated description for this service account"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "Updated description for this service account"
    assert r.json()["name"] == "Updated Service Account Name"

    # Rotate Client Secret: the old secret fails at once, the new one works.
    r = http.post(f"{ACCOUNTS}/{account_id}/rotate", headers=bearer(user_token))
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert {"id", "clientId", "clientSecret", "name", "workspace", "updatedAt"} <= rotated.keys()
    assert rotated["id"] == account_id and rotated["clientId"] == client_id
    assert rotated["name"] == "Updated Service Account Name"
    assert rotated["workspace"] == "acme-corp"
    assert CLIENT_SECRET_RE.match(rotated["clientSecret"]) and rotated["clientSecret"] != secret
    assert_recent_utc(rotated["updatedAt"])
    new_secret = rotated["clientSecret"]
    assert_invalid_client(request_token(http, client_id, secret))
    assert request_token(http, client_id, new_secret).status_code == 200

    # Revoke: token requests now fail with invalid_client.
    r = http.post(f"{ACCOUNTS}/{account_id}/revoke", headers=bearer(user_token))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked"
    assert_invalid_client(request_token(http, client_id, new_secret))

    # Delete: gone from the API and from the token endpoint.
    r = http.delete(f"{ACCOUNTS}/{account_id}", headers=bearer(user_token))
    assert r.status_code == 204, r.text
    r = http.get(f"{ACCOUNTS}/{account_id}", headers=bearer(user_token))
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "message": "Service account not found"}
    assert_invalid_client(request_token(http, client_id, new_secret))

    # Troubleshooting: "Invalid client credentials" for a wrong secret of a live account.
    r = http.post(ACCOUNTS, headers=bearer(user_token), json={"name": "Second Client"})
    assert r.status_code == 201, r.text
    second = r.json()
    wrong = "sk_" + ("0" if second["clientSecret"][3] != "0" else "1") + second["clientSecret"][4:]
    assert_invalid_client(request_token(http, second["clientId"], wrong))
    assert request_token(http, second["clientId"], second["clientSecret"]).status_code == 200
    http.close()


def test_guide_nodejs_snippet(launch: Launch, store_env: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node or npm is not installed")
    project = tmp_path / "node"
    project.mkdir()
    try:
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "axios"],
            cwd=project,
            env=base_env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm could not install axios within 60 s")
    if installed.returncode != 0:
        pytest.skip(f"npm could not install axios: {installed.stderr[-300:]!r}")

    (server,) = launch(store_env)
    user_token = bootstrap_admin(store_env)
    with server.client() as http:
        r = http.post(ACCOUNTS, headers=bearer(user_token), json={"name": "Node Client"})
        assert r.status_code == 201, r.text
        account = r.json()
        script = project / "token.js"
        script.write_text(
            localize(
                GUIDE_NODE,
                server.base_url,
                client_id=account["clientId"],
                client_secret=account["clientSecret"],
            )
        )
        result = subprocess.run(
            ["node", str(script)],
            cwd=project,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Access Token: ey"), (result.stdout, result.stderr)
        token = result.stdout.strip().removeprefix("Access Token: ")
        assert verify(token, http)["sub"] == account["clientId"]


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """One store for two servers, behind one configured issuer (as behind a load balancer)."""
    env = base_env(
        CENTRALI_DATA_DIR=str(tmp_path / "shared"),
        CENTRALI_ISSUER="https://auth.centrali.localhost",
        CENTRALI_FORWARDED_ALLOW_IPS="127.0.0.1",  # the balancer, on this host
    )
    if request.param == "postgres":
        env["CENTRALI_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    return env


def test_two_servers_share_one_store(shared_store_env: dict[str, str], launch: Launch) -> None:
    env = shared_store_env
    (server_a,) = launch(env)
    (server_b,) = launch(env)
    a, b = server_a.client(), server_b.client()

    # One key set: both publish the same public keys, nothing private.
    jwks_a, jwks_b = a.get("/oidc/jwks").json(), b.get("/oidc/jwks").json()
    assert jwks_a == jwks_b and jwks_a["keys"], (jwks_a, jwks_b)
    for key in jwks_a["keys"]:
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()

    user_token = bootstrap_admin(env)
    r = a.post(ACCOUNTS, headers=bearer(user_token), json={"name": "Shared Client"})
    assert r.status_code == 201, r.text
    account = r.json()
    client_id, old_secret = account["clientId"], account["clientSecret"]
    r = b.get(ACCOUNTS, headers=bearer(user_token))
    assert r.status_code == 200 and [x["clientId"] for x in r.json()["data"]] == [client_id]
    assert request_token(b, client_id, old_secret).status_code == 200

    # A secret rotated through A is refused by B at once; the new one works on B.
    r = a.post(f"{ACCOUNTS}/{account['id']}/rotate", headers=bearer(user_token))
    assert r.status_code == 200, r.text
    new_secret = r.json()["clientSecret"]
    assert_invalid_client(request_token(b, client_id, old_secret))
    assert request_token(b, client_id, new_secret).status_code == 200

    # A token minted by A verifies against B's JWKS, and B's API takes it as genuine.
    r = request_token(a, client_id, new_secret)
    assert r.status_code == 200, r.text
    token_from_a = r.json()["access_token"]
    assert jwt.get_unverified_header(token_from_a)["kid"] in kids(b)
    assert verify(token_from_a, b)["sub"] == client_id
    r = b.get(ACCOUNTS, headers=bearer(token_from_a))
    assert r.status_code == 403, r.text  # genuine, but service accounts may not manage

    # Revoked through A: B's token endpoint refuses it and B's API refuses A's token.
    r = a.post(f"{ACCOUNTS}/{account['id']}/revoke", headers=bearer(user_token))
    assert r.status_code == 200, r.text
    assert_invalid_client(request_token(b, client_id, new_secret))
    r = b.get(ACCOUNTS, headers=bearer(token_from_a))
    assert r.status_code == 401
    assert r.json() == {"error": "token_revoked", "message": "Token revoked"}
    a.close()
    b.close()


def test_servers_started_together_on_a_fresh_store(
    shared_store_env: dict[str, str], launch: Launch
) -> None:
    """Replicas starting at once all migrate the same empty store and settle on one key."""
    servers = launch(shared_store_env, shared_store_env, shared_store_env)
    published = []
    for server in servers:
        with server.client() as http:
            published.append(http.get("/oidc/jwks").json())
    assert len(published[0]["keys"]) == 1, published[0]
    assert all(jwks == published[0] for jwks in published), published


def worker_pids(server: Server) -> list[int]:
    """uvicorn's worker processes under the ``serve`` supervisor (Linux /proc)."""
    workers = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc_dir / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (proc_dir / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        # uvicorn spawns its workers with multiprocessing; its resource tracker is no worker.
        if ppid == server.proc.pid and b"spawn_main" in cmdline:
            workers.append(int(proc_dir.name))
    return workers


def test_workers_2(launch: Launch, store_env: dict[str, str]) -> None:
    (server,) = launch(store_env, extra=("--workers", "2"))
    if Path("/proc/self/stat").exists():
        deadline = time.monotonic() + 10
        while len(worker_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids(server)) >= 2, server.log_text()

    user_token = bootstrap_admin(store_env)
    with server.client() as http:
        r = http.post(ACCOUNTS, headers=bearer(user_token), json={"name": "Busy Client"})
        assert r.status_code == 201, r.text
        account = r.json()
        published = kids(http)

    tokens = []
    for _ in range(20):
        # A new connection each time, so the kernel may hand it to either worker.
        with server.client() as http:
            r = request_token(http, account["clientId"], account["clientSecret"])
            assert r.status_code == 200, r.text
            tokens.append(r.json()["access_token"])
    assert len({jwt.get_unverified_header(t)["kid"] for t in tokens}) == 1
    assert jwt.get_unverified_header(tokens[0])["kid"] in published
    with server.client() as http:
        assert all(verify(t, http)["sub"] == account["clientId"] for t in tokens)
