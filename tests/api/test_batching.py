"""Concurrent requests of many clients: the token endpoint's client lookups, the workspace
API's service-account checks and its record reads share one statement per event-loop turn
(web.batching), and each answer is still its own client's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httpx2 as httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from centrali.web.runtime import Runtime
from tests.factories import Factory, bearer

ISSUER = "http://testserver"


def count_statements(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Watches the bulk lookup ``owner.name``: the number of keys of each call."""
    statements: list[int] = []
    bulk = getattr(owner, name)

    def counting(keys: Sequence[Any]) -> Any:
        statements.append(len(keys))
        return bulk(keys)

    monkeypatch.setattr(owner, name, counting)
    return statements


def test_concurrent_requests_of_many_clients_each_get_their_own_answer(
    factory: Factory, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory.workspace()
    admin = factory.admin()
    accounts = [factory.service_account(admin, name=f"Client {i}") for i in range(5)]
    revoked = factory.service_account(admin, name="Revoked")
    r = client.post(
        f"/workspace/acme-corp/api/v1/service-accounts/{revoked['id']}/revoke",
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200, r.text

    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]
    statements = count_statements(monkeypatch, runtime.clients, "find_clients")

    # (client_id, secret, expected status): good ones, a wrong secret, an unknown id, a
    # revoked account, all interleaved.
    asks: list[tuple[str, str, int]] = []
    for round_ in range(4):
        for a in accounts:
            asks.append((a["clientId"], a["clientSecret"], 200))
        asks.append((accounts[round_]["clientId"], "sk_" + "0" * 64, 401))
        asks.append((f"ci_unknown{round_}", "sk_whatever", 401))
        asks.append((revoked["clientId"], revoked["clientSecret"], 401))

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, client=(f"192.0.2.{len(asks)}", 4000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/oidc/token",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": cid,
                            "client_secret": secret,
                        },
                    )
                    for cid, secret, _ in asks
                )
            )

    assert client.portal is not None
    answers = client.portal.call(send_all)
    for (cid, _, status), answer in zip(asks, answers, strict=True):
        assert answer.status_code == status, (cid, answer.text)
        if status == 200:
            claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
            assert claims["sub"] == cid
    assert sum(statements) == len(asks)
    assert len(statements) < len(asks)  # gathered: fewer statements than requests


STRUCTURES = "/workspace/acme-corp/api/v1/structures"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"


def test_concurrent_api_calls_of_many_accounts_each_get_their_own_answer(
    factory: Factory, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory.workspace()
    factory.workspace("globex")
    admin = factory.admin()
    good = [factory.service_account(admin, name=f"Reader {i}") for i in range(3)]
    no_groups = factory.service_account(admin, name="No groups", groups=[])
    revoked = factory.service_account(admin, name="Revoked later")
    elsewhere = factory.service_account(factory.admin("globex"), "globex", name="Other ws")

    tokens = {a["clientId"]: factory.sa_token(a) for a in [*good, no_groups, revoked, elsewhere]}
    auth = {"Authorization": f"Bearer {admin}"}
    r = client.post(
        f"/workspace/acme-corp/api/v1/service-accounts/{revoked['id']}/revoke", headers=auth
    )
    assert r.status_code == 200, r.text
    # One of good[0]'s tokens is revoked by itself (RFC 7009); its other token still works.
    dropped = factory.sa_token(good[0])
    body = urlencode(
        {
            "client_id": good[0]["clientId"],
            "client_secret": good[0]["clientSecret"],
            "token": dropped,
        }
    )
    r = client.post(
        "/oidc/revoke",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text

    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]
    statements = count_statements(monkeypatch, runtime, "_service_accounts_grants")

    asks: list[tuple[str, int]] = []
    for _ in range(3):
        asks += [(tokens[a["clientId"]], 200) for a in good]
        asks += [
            (tokens[no_groups["clientId"]], 403),  # no group, no structures:read
            (tokens[revoked["clientId"]], 401),  # revoked after the token was issued
            (dropped, 401),  # this token revoked
            (tokens[elsewhere["clientId"]], 403),  # another workspace's token
            (admin, 200),  # a user: the unbatched path
        ]

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            return await asyncio.gather(
                *(http.get(STRUCTURES, headers={"Authorization": f"Bearer {t}"}) for t, _ in asks)
            )

    assert client.portal is not None
    answers = client.portal.call(send_all)
    for (token, status), answer in zip(asks, answers, strict=True):
        assert answer.status_code == status, (claims_of(token)["sub"], answer.text)
        if status == 401:
            assert answer.json()["error"] == "token_revoked"
    batched = sum(
        1
        for t, _ in asks
        if claims_of(t)["isServiceAccount"] == "true" and claims_of(t)["workspace"] == "acme-corp"
    )
    assert sum(statements) == batched
    assert len(statements) < batched  # gathered: fewer statements than checks


def test_concurrent_record_reads_each_get_their_own_record(
    factory: Factory, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids: dict[str, int] = {}
    tokens: dict[str, str] = {}
    for slug in ("acme-corp", "globex"):
        factory.workspace(slug)
        admin = factory.admin(slug)
        auth = {"Authorization": f"Bearer {admin}"}
        notes = {"slug": "notes", "name": "Notes", "fields": [{"name": "text", "type": "string"}]}
        r = client.post(f"/workspace/{slug}/api/v1/structures", json=notes, headers=auth)
        assert r.status_code == 201, r.text
        for i in range(3):
            body = {"recordSlug": "notes", "data": {"text": f"{slug} {i}"}}
            r = client.post(f"/workspace/{slug}/api/v1/records", json=body, headers=auth)
            assert r.status_code == 201, r.text
            ids[f"{slug} {i}"] = r.json()["id"]
        tokens[slug] = factory.sa_token(factory.service_account(admin, slug, name="Reader"))

    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]
    statements = count_statements(monkeypatch, runtime, "_read_records")

    # (workspace of the token and path, record, expected text or None for 404)
    asks: list[tuple[str, int, str | None]] = []
    for _ in range(3):
        for name, record_id in ids.items():
            slug = name.split()[0]
            other = "globex" if slug == "acme-corp" else "acme-corp"
            asks.append((slug, record_id, name))
            asks.append((other, record_id, None))  # its id, asked in the other workspace
        asks.append(("acme-corp", 9_999_999, None))

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            return await asyncio.gather(
                *(
                    http.get(
                        f"/workspace/{slug}/api/v1/records/{record_id}",
                        headers={"Authorization": f"Bearer {tokens[slug]}"},
                    )
                    for slug, record_id, _ in asks
                )
            )

    assert client.portal is not None
    answers = client.portal.call(send_all)
    for (slug, record_id, text), answer in zip(asks, answers, strict=True):
        if text is None:
            assert answer.status_code == 404, (slug, record_id, answer.text)
        else:
            assert answer.status_code == 200, answer.text
            assert (answer.json()["id"], answer.json()["data"]) == (record_id, {"text": text})
    assert sum(statements) == len(asks)
    assert len(statements) < len(asks)  # gathered: fewer statements than reads


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_a_slow_store_holds_its_waiters_not_the_event_loop(
    factory: Factory, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookups run on their own thread: while the store takes a second to answer a token
    request's lookup, /healthz and the JWKS answer at once on the same event loop."""
    factory.workspace()
    account = factory.service_account(factory.admin())
    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]
    find = runtime.clients.find_clients

    def slow(client_ids: Sequence[str]) -> Any:
        time.sleep(1.0)  # a PostgreSQL that takes its time
        return find(client_ids)

    monkeypatch.setattr(runtime.clients, "find_clients", slow)

    async def race() -> tuple[httpx.Response, float, float]:
        transport = httpx.ASGITransport(app=client.app, client=("192.0.2.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            started = time.monotonic()
            token = asyncio.ensure_future(
                http.post(
                    "/oidc/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": account["clientId"],
                        "client_secret": account["clientSecret"],
                    },
                )
            )
            await asyncio.sleep(0.1)  # the lookup is in flight
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/oidc/jwks")).status_code == 200
            others_done = time.monotonic() - started
            answer = await token
            return answer, others_done, time.monotonic() - started

    assert client.portal is not None
    answer, others_done, token_done = client.portal.call(race)
    assert answer.status_code == 200, answer.text
    assert token_done >= 1.0
    assert others_done < 0.8, f"the event loop waited for the store ({others_done:.2f} s)"


def test_a_bug_in_a_batch_is_a_fixed_500_and_the_batch_recovers(
    factory: Factory, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (not a store outage) inside each batched lookup: the token lookup, the
    workspace API's account check, the record read. Every waiter gets the fixed 500, with
    nothing of the exception in the answer, and once the bug is gone the same batch answers
    again (it is not left "in flight")."""
    factory.workspace()
    admin = factory.admin()
    notes = {"slug": "notes", "name": "Notes", "fields": [{"name": "text", "type": "string"}]}
    r = client.post("/workspace/acme-corp/api/v1/structures", json=notes, headers=bearer(admin))
    assert r.status_code == 201, r.text
    record = {"recordSlug": "notes", "data": {"text": "kept"}}
    r = client.post("/workspace/acme-corp/api/v1/records", json=record, headers=bearer(admin))
    assert r.status_code == 201, r.text
    record_url = f"/workspace/acme-corp/api/v1/records/{r.json()['id']}"
    account = factory.service_account(admin, name="Reader")
    token = factory.sa_token(account)
    form = {
        "grant_type": "client_credentials",
        "client_id": account["clientId"],
        "client_secret": account["clientSecret"],
    }
    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]

    def broken(_keys: Sequence[Any]) -> Any:
        raise RuntimeError("secret-bearing detail that must not leak")

    async def ask(kind: str) -> list[httpx.Response]:
        """Three requests at once: they share the batch's call."""
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            if kind == "token":
                calls = [http.post("/oidc/token", data=form) for _ in range(3)]
            else:
                auth = {"Authorization": f"Bearer {token}"}
                calls = [http.get(record_url, headers=auth) for _ in range(3)]
            return list(await asyncio.gather(*calls))

    token_500 = {"error": "server_error", "error_description": "Internal server error"}
    api_500 = {"error": "server_error", "message": "Internal server error"}
    assert client.portal is not None
    for owner, name, kind, fixed in (
        (runtime.clients, "find_clients", "token", token_500),
        (runtime, "_service_accounts_grants", "record", api_500),
        (runtime, "_read_records", "record", api_500),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, broken)
            answers = client.portal.call(ask, kind)
        for answer in answers:
            assert answer.status_code == 500, (name, answer.text)
            assert answer.json() == fixed, name
            assert "secret-bearing" not in answer.text
        for answer in client.portal.call(ask, kind):
            assert answer.status_code == 200, (name, answer.text)
            if kind == "record":
                assert answer.json()["data"] == {"text": "kept"}
            else:
                assert answer.json()["token_type"] == "Bearer"
