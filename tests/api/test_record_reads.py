"""``GET …/records/{id}`` with a service account's token is answered in front of the
framework (web.record_reads): the same bytes and the same refusals as the route, which
still answers every other case."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from centrali.web.record_reads import RecordReadDispatcher
from tests.api.workspace_api import Env, assert_status, make_env
from tests.factories import Factory

ODD: dict[str, Any] = {
    "slug": "odd",
    "name": "Odd values",
    "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "price", "type": "number"},
        {"name": "count", "type": "integer"},
        {"name": "meta", "type": "json"},
    ],
}
ODD_DATA: dict[str, Any] = {
    "name": 'Läptop "Pro" ☃ \\ </script>',
    "price": 1e16,
    "count": 2**53 + 1,
    "meta": {"nested": [0.1, -0.0, 1.5e-7, None, True, {"é": "\u2028"}]},
}


class FrameworkSpy:
    """Stands in for the FastAPI app behind the dispatcher and counts what reaches it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def dispatcher_of(app: Any) -> RecordReadDispatcher:
    seen = app
    for _ in range(10):
        if isinstance(seen, RecordReadDispatcher):
            return seen
        seen = getattr(seen, "_asgi", None) or seen.app
    raise AssertionError("no RecordReadDispatcher in the app's layers")


@pytest.fixture
def env(factory: Factory, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Env:
    env = make_env(factory, client)
    env.create_structure(ODD)
    return env


@pytest.fixture
def spy(env: Env, monkeypatch: pytest.MonkeyPatch) -> FrameworkSpy:
    dispatcher = dispatcher_of(env.api.app)
    spy = FrameworkSpy(dispatcher.app)
    monkeypatch.setattr(dispatcher, "app", spy)
    return spy


def reader(env: Env, groups: list[str] | None = None) -> tuple[dict[str, Any], str]:
    account = env.service_account(name="reader", groups=["api-users"] if groups is None else groups)
    return account, env.sa_token(account)


def comparable(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "x-request-id"}


def test_a_service_account_read_has_the_routes_bytes_without_the_framework(
    env: Env, spy: FrameworkSpy
) -> None:
    record = env.create_record("odd", ODD_DATA)
    _, token = reader(env)
    user = env.user_token(["developers"])
    spy.paths.clear()
    fast = env.call("GET", f"/records/{record['id']}", token=token)
    assert spy.paths == []
    routed = env.call("GET", f"/records/{record['id']}", token=user)
    assert len(spy.paths) == 1  # a user's token: the route's
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert comparable(fast.headers) == comparable(routed.headers)
    assert fast.json()["data"] == ODD_DATA
    assert fast.headers["cache-control"] == "no-store"
    assert fast.headers["content-type"] == "application/json"


def test_refusals_on_the_fast_path_are_the_routes(env: Env, spy: FrameworkSpy) -> None:
    record = env.create_record("odd", {"name": "x"})
    rid = record["id"]
    account, token = reader(env)
    _, no_groups = reader(env, groups=[])
    cases: list[tuple[str, dict[str, str], int, str]] = [
        (f"/records/{rid + 1000}", {"Authorization": f"Bearer {token}"}, 404, "not_found"),
        ("/records/abc", {"Authorization": f"Bearer {token}"}, 404, "not_found"),
        (f"/records/{rid}", {}, 401, "unauthorized"),
        (f"/records/{rid}", {"Authorization": "Bearer x.y.z"}, 401, "unauthorized"),
        (f"/records/{rid}", {"Authorization": f"Bearer {no_groups}"}, 403, "forbidden"),
    ]
    for path, headers, status, error in cases:
        spy.paths.clear()
        answer = env.call("GET", path, headers=headers)
        assert answer.status_code == status, (path, answer.text)
        assert answer.json()["error"] == error, (path, answer.text)
        assert spy.paths == [], path
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer ")
    other = env.call("GET", f"/records/{rid}", token=token, workspace="globex")
    assert other.status_code in (401, 403)
    assert_status(
        env.call("POST", f"/service-accounts/{account['id']}/revoke", body={}, token=env.admin),
        200,
    )
    spy.paths.clear()
    revoked = env.call("GET", f"/records/{rid}", token=token)
    assert (revoked.status_code, revoked.json()["error"]) == (401, "token_revoked")
    assert spy.paths == []


def test_what_the_fast_path_does_not_know_goes_to_the_route(env: Env, spy: FrameworkSpy) -> None:
    record = env.create_record("odd", {"name": "x"})
    _, token = reader(env)
    path = f"/records/{record['id']}"
    spy.paths.clear()
    with_body = env.api.request(
        "GET",
        f"/workspace/{env.workspace}/api/v1{path}",
        headers={"Authorization": f"Bearer {token}"},
        content=b"{}",
    )
    assert with_body.status_code == 200
    assert len(spy.paths) == 1
    head = env.call("HEAD", path, token=token)
    assert head.status_code == 405
    assert len(spy.paths) == 2
    listing = env.call("GET", "/records", token=token)
    assert listing.status_code == 200
    assert len(spy.paths) == 3


def test_a_store_outage_on_the_fast_path_is_the_routes_503(
    env: Env, spy: FrameworkSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    record = env.create_record("odd", {"name": "x"})
    _, token = reader(env)
    runtime = env.api.app.app.state.runtime

    async def down(_key: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(runtime.record_reads, "find", down)
    spy.paths.clear()
    answer = env.call("GET", f"/records/{record['id']}", token=token)
    assert answer.status_code == 503
    assert answer.json()["error"] == "service_unavailable"
    assert answer.headers["retry-after"] == "1"
    assert spy.paths == []  # answered in front: the route would ask the failing store again
