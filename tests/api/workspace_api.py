"""Helpers for the black-box tests of the workspace API (contract: "Workspace API").

Requests go through HTTP only; the store is touched only to set up users and groups, the
way an operator's CLI would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import httpx2
import jwt
from fastapi.testclient import TestClient

from centrali.oauth.keys import KeySet
from centrali.services.keys import load_key_set
from centrali.services.permissions import ADMIN_GROUP
from centrali.services.users import create_user, issue_user_token
from tests.factories import Factory, bearer

WS = "acme-corp"
OTHER_WS = "globex"
ISO_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

UNAUTHORIZED = {"error": "unauthorized", "message": "Unauthorized"}
TOKEN_EXPIRED = {"error": "token_expired", "message": "Token expired"}
TOKEN_REVOKED = {"error": "token_revoked", "message": "Token revoked"}
STRUCTURE_NOT_FOUND = {"error": "not_found", "message": "Structure not found"}
RECORD_NOT_FOUND = {"error": "not_found", "message": "Record not found"}

# The guide's "Create a Record" example and a structure it fits.
PRODUCTS: dict[str, Any] = {
    "slug": "products",
    "name": "Products",
    "description": "What we sell",
    "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "price", "type": "number", "required": True},
        {"name": "inStock", "type": "boolean"},
    ],
}
GUIDE_RECORD: dict[str, Any] = {
    "recordSlug": "products",
    "data": {"name": "Laptop Pro", "price": 1299.99, "inStock": True},
}


def base(workspace: str = WS) -> str:
    return f"/workspace/{workspace}/api/v1"


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def parse_utc(value: Any) -> datetime:
    assert isinstance(value, str) and ISO_UTC_RE.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def assert_recent(value: Any, slack: float = 300.0) -> None:
    assert abs(parse_utc(value).timestamp() - time.time()) < slack, value


def json_body(r: httpx2.Response) -> dict[str, Any]:
    assert r.headers.get("content-type", "").startswith("application/json"), (
        r.status_code,
        r.headers.get("content-type"),
        r.text,
    )
    body = r.json()
    assert isinstance(body, dict), body
    return body


def assert_status(r: httpx2.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    return json_body(r) if r.content else {}


def assert_answer(r: httpx2.Response, status: int, expected: dict[str, Any]) -> None:
    """A fixed error answer, exactly."""
    assert r.status_code == status, (r.status_code, r.text)
    assert json_body(r) == expected


def assert_invalid_request(r: httpx2.Response, names: str | None = None) -> dict[str, Any]:
    """400 ``{"error": "invalid_request", "message", ...}``; ``names`` must be in the message."""
    assert r.status_code == 400, (r.status_code, r.text, r.request.content[:300])
    body = json_body(r)
    assert body.get("error") == "invalid_request", body
    assert isinstance(body.get("message"), str) and body["message"], body
    if names is not None:
        assert names in body["message"], body
    return body


def assert_forbidden(r: httpx2.Response) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    body = json_body(r)
    assert body.get("error") == "forbidden", body
    message = body.get("message")
    assert isinstance(message, str) and message.startswith("Forbidden: "), body
    assert set(body) <= {"error", "message"}, body
    # RFC 6750 §3.1: a good token that does not grant the request.
    challenge = r.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="centrali", error="insufficient_scope"'), challenge


def assert_unauthorized(r: httpx2.Response, reason: str | None = None) -> None:
    """401 ``unauthorized``, the message saying why (``reason`` in it, when given), with an
    RFC 6750 Bearer challenge."""
    assert r.status_code == 401, (r.status_code, r.text)
    body = json_body(r)
    assert set(body) == {"error", "message"}, body
    assert body["error"] == UNAUTHORIZED["error"], body
    assert body["message"].startswith("Unauthorized: "), body
    if reason is not None:
        assert reason in body["message"], (reason, body)
    assert r.headers["www-authenticate"].startswith('Bearer realm="centrali"'), r.headers


def assert_conflict(r: httpx2.Response) -> None:
    assert r.status_code == 409, (r.status_code, r.text)
    body = json_body(r)
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body


def eventually(
    call: Callable[[], httpx2.Response], status: int, within: float = 1.0
) -> httpx2.Response:
    """The answer of ``call`` once it has ``status``, or the last one after ``within`` s.

    The issue lets permissions be cached, but a change must take effect within a second.
    """
    deadline = time.monotonic() + within
    while True:
        r = call()
        if r.status_code == status or time.monotonic() >= deadline:
            return r
        time.sleep(0.05)


@dataclass
class Env:
    """One workspace with an admin user; 500s come back as answers, not exceptions."""

    factory: Factory
    api: TestClient
    workspace: str = WS
    _users: int = field(default=0)
    emails: dict[str, str] = field(default_factory=dict)

    @cached_property
    def keys(self) -> KeySet:
        return load_key_set(self.factory.db)

    @cached_property
    def admin(self) -> str:
        return self.user_token([ADMIN_GROUP])

    def user_token(
        self,
        groups: Sequence[str],
        *,
        workspace: str | None = None,
        now: float | None = None,
        ttl: int | None = None,
    ) -> str:
        """A new user of ``workspace`` in ``groups`` (none when empty), and a token for them."""
        self._users += 1
        workspace = workspace or self.workspace
        email = f"member{self._users}@{workspace}.test"
        user = create_user(self.factory.db, email=email, workspace_slug=workspace, groups=groups)
        settings = self.factory.settings
        token = issue_user_token(
            user,
            keys=self.keys,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl=ttl or settings.token_ttl,
            now=time.time() if now is None else now,
        ).token
        self.emails[token] = email
        return token

    def service_account(
        self, *, admin: str | None = None, workspace: str | None = None, **body: Any
    ) -> dict[str, Any]:
        return self.factory.service_account(
            admin or self.admin, workspace=workspace or self.workspace, **body
        )

    def sa_token(self, account: dict[str, Any]) -> str:
        return self.factory.sa_token(account)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        workspace: str | None = None,
    ) -> httpx2.Response:
        """``path`` is relative to ``/workspace/{slug}/api/v1``."""
        url = base(workspace or self.workspace) + path
        if headers is None:
            headers = bearer(token or self.admin)
        if body is None:
            return self.api.request(method, url, headers=headers, params=params)
        return self.api.request(method, url, json=body, headers=headers, params=params)

    def send_raw(
        self, method: str, path: str, raw: str, *, token: str | None = None
    ) -> httpx2.Response:
        """A request whose body is ``raw`` text labelled as JSON (malformed bodies)."""
        headers = {**bearer(token or self.admin), "Content-Type": "application/json"}
        return self.api.request(method, base(self.workspace) + path, content=raw, headers=headers)

    def create_structure(
        self, body: dict[str, Any], *, token: str | None = None, workspace: str | None = None
    ) -> dict[str, Any]:
        r = self.call("POST", "/structures", body, token=token, workspace=workspace)
        return assert_status(r, 201)

    def create_record(
        self,
        slug: str,
        data: dict[str, Any],
        *,
        token: str | None = None,
        workspace: str | None = None,
    ) -> dict[str, Any]:
        body = {"recordSlug": slug, "data": data}
        r = self.call("POST", "/records", body, token=token, workspace=workspace)
        return assert_status(r, 201)

    def structure(self, slug: str) -> httpx2.Response:
        return self.call("GET", f"/structures/{slug}")

    def record(self, record_id: int | str) -> httpx2.Response:
        return self.call("GET", f"/records/{record_id}")

    def list_all(self, path: str, **params: str) -> dict[str, Any]:
        r = self.call("GET", path, params={"limit": "100", **params})
        return assert_status(r, 200)


def make_env(factory: Factory, client: TestClient, *, workspaces: Sequence[str] = (WS,)) -> Env:
    for slug in workspaces:
        factory.workspace(slug)
    # Same app and store as `client` (already started by it).
    api = TestClient(client.app, base_url=str(client.base_url), raise_server_exceptions=False)
    return Env(factory=factory, api=api, workspace=workspaces[0])
