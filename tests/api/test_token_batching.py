"""Concurrent token requests of many clients: their lookups share one statement per event-loop
turn (web.client_lookups), and each answer is still its own client's."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx2 as httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from centrali.web.runtime import Runtime
from tests.factories import Factory

ISSUER = "http://testserver"


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
    statements: list[int] = []
    find = runtime.clients.find_clients

    def counting(client_ids: Sequence[str]) -> Any:
        statements.append(len(client_ids))
        return find(client_ids)

    monkeypatch.setattr(runtime.clients, "find_clients", counting)

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
