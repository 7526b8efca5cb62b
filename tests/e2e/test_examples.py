"""The examples against a real ``centrali serve`` (issue 3, parts 5 and 6): the guide's
complete Python script runs as a user would run it and prints its two lines, and the example
service accepts the live server's tokens."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Launch, Server, base_env, cli_ok

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WS = "acme-corp"
OTHER_WS = "globex"
ADMIN = "admin@acme-corp.test"
PRODUCTS = {
    "slug": "products",
    "name": "Products",
    "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "price", "type": "number", "required": True},
        {"name": "inStock", "type": "boolean"},
    ],
}
EXAMPLE_TIMEOUT = 60


@dataclass
class Live:
    server: Server
    admin_token: str
    account: dict[str, Any]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_token(env: dict[str, str], workspace: str, email: str) -> str:
    """Bootstrap ``workspace`` with an admin, through the CLI, and return the admin's token."""
    cli_ok(env, "bootstrap", "--workspace", workspace, "--admin", email)
    out = cli_ok(env, "user", "token", email, "--workspace", workspace)
    assert out.count("\n") == 1 and out.count(".") == 2, out
    return out.strip()


@pytest.fixture
def live(launch: Launch, store_env: dict[str, str]) -> Live:
    """A fresh server with the guide's prerequisites: workspace, admin, the ``products``
    structure, and a service account in the default groups."""
    (server,) = launch(store_env)
    admin = user_token(store_env, WS, ADMIN)
    with server.client() as http:
        r = http.post(f"/workspace/{WS}/api/v1/structures", json=PRODUCTS, headers=bearer(admin))
        assert r.status_code == 201, r.text
        r = http.post(
            f"/workspace/{WS}/api/v1/service-accounts",
            json={"name": "Complete Example", "scope": "openid"},
            headers=bearer(admin),
        )
        assert r.status_code == 201, r.text
        account: dict[str, Any] = r.json()
    return Live(server=server, admin_token=admin, account=account)


def service_account_token(server: Server, account: dict[str, Any]) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": account["clientId"],
        "client_secret": account["clientSecret"],
        "scope": "openid",
    }
    with server.client() as http:
        r = http.post("/oidc/token", data=form)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def test_complete_example_prints_found_and_created_lines(live: Live) -> None:
    env = base_env(
        CENTRALI_URL=live.server.base_url,
        CENTRALI_CLIENT_ID=live.account["clientId"],
        CENTRALI_CLIENT_SECRET=live.account["clientSecret"],
        CENTRALI_WORKSPACE=WS,
    )
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "complete_example.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"Found 1 structures\nCreated record: (\d+)\n", result.stdout)
    assert match, result.stdout

    # The record it reports is there, with the guide's data, created by the account.
    with live.server.client() as http:
        r = http.get(
            f"/workspace/{WS}/api/v1/records/{match.group(1)}", headers=bearer(live.admin_token)
        )
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["recordSlug"] == "products"
    assert record["data"] == {"name": "Laptop Pro", "price": 1299.99}
    assert record["createdBy"] == live.account["clientId"]


def load_protected_service(
    monkeypatch: pytest.MonkeyPatch, issuer: str, workspace: str = WS
) -> ModuleType:
    """examples/protected_service.py, imported afresh with its verifier pointed at ``issuer``
    and guarding ``workspace``."""
    monkeypatch.setenv("CENTRALI_ISSUER", issuer)
    monkeypatch.setenv("CENTRALI_WORKSPACE", workspace)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    path = EXAMPLES / "protected_service.py"
    spec = importlib.util.spec_from_file_location("protected_service_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protected_service_example_accepts_live_tokens(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = load_protected_service(monkeypatch, live.server.base_url)
    sa_token = service_account_token(live.server, live.account)

    with TestClient(service.app) as orders:
        r = orders.get("/orders", headers=bearer(sa_token))
        assert r.status_code == 200, r.text
        assert r.json()["caller"] == live.account["clientId"]
        assert r.json()["isServiceAccount"] is True

        r = orders.get("/orders", headers=bearer(live.admin_token))
        assert r.status_code == 200, r.text
        assert r.json()["isServiceAccount"] is False

        r = orders.get("/orders")
        assert r.status_code == 401, r.text

        header, payload, _signature = sa_token.split(".")
        r = orders.get("/orders", headers=bearer(f"{header}.{payload}."))
        assert r.status_code == 401, r.text

    # The same service guarding another workspace: a genuine acme-corp token is forbidden.
    other = load_protected_service(monkeypatch, live.server.base_url, workspace=OTHER_WS)
    with TestClient(other.app) as orders:
        r = orders.get("/orders", headers=bearer(sa_token))
        assert r.status_code == 403, r.text
