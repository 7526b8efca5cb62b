"""Opt-in speed-ups: ES256/EdDSA signatures and token reuse (both off by default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import create_app
from tests.factories import Factory, bearer

API = "/workspace/acme-corp/api/v1"
ClientFor = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def client_for(settings: Settings, db: Database) -> ClientFor:
    """Another app on the same store, with some settings changed."""

    @contextmanager
    def make(**changes: Any) -> Iterator[TestClient]:
        changed = Settings(
            database_url=settings.database_url,
            data_dir=settings.data_dir,
            issuer=settings.issuer,
            **changes,
        )
        with TestClient(create_app(changed, db=db), base_url=settings.issuer) as client:
            yield client

    return make


def _token(client: TestClient, account: dict[str, Any]) -> dict[str, Any]:
    r = client.post(
        "/oidc/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["clientId"],
            "client_secret": account["clientSecret"],
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize(("alg", "kty"), [("ES256", "EC"), ("EdDSA", "OKP")])
def test_signing_alg_setting(factory: Factory, client_for: ClientFor, alg: str, kty: str) -> None:
    factory.workspace()
    admin = factory.admin()
    account = factory.service_account(admin)
    with client_for(signing_alg=alg) as fast:
        token = _token(fast, account)["access_token"]
        header = jwt.get_unverified_header(token)
        assert header["alg"] == alg
        jwks = fast.get("/oidc/jwks").json()["keys"]
        key = next(k for k in jwks if k["kid"] == header["kid"])
        assert key["kty"] == kty and key["alg"] == alg and "d" not in key
        claims = jwt.decode(
            token, jwt.PyJWK(key).key, algorithms=[alg], audience=factory.settings.audience
        )
        assert claims["isServiceAccount"] == "true"
        assert fast.get("/.well-known/openid-configuration").json()[
            "id_token_signing_alg_values_supported"
        ] == [alg]
        # the API accepts it, and tokens of the RS256 key keep working beside it
        assert fast.get(f"{API}/structures", headers=bearer(token)).status_code == 200
        assert fast.get(f"{API}/service-accounts", headers=bearer(admin)).status_code == 200


def test_token_reuse_answers_the_held_token_until_something_changes(
    factory: Factory, client_for: ClientFor
) -> None:
    factory.workspace()
    admin = factory.admin()
    account = factory.service_account(admin)
    base = f"{API}/service-accounts/{account['id']}"
    with client_for(token_reuse_seconds=60) as reusing:
        first = _token(reusing, account)
        again = _token(reusing, account)
        assert again["access_token"] == first["access_token"]
        assert again["expires_in"] <= first["expires_in"]

        # a group change is never answered from memory
        r = reusing.put(f"{base}/groups", json={"groups": ["developers"]}, headers=bearer(admin))
        assert r.status_code == 200
        regrouped = _token(reusing, account)
        assert regrouped["access_token"] != first["access_token"]
        assert jwt.decode(regrouped["access_token"], options={"verify_signature": False})[
            "groups"
        ] == ["developers"]

        # nor a rotation: the new secret gets a new token, the old one none
        rotated = reusing.post(f"{base}/rotate", headers=bearer(admin)).json()
        fresh = _token(reusing, {**account, "clientSecret": rotated["clientSecret"]})
        assert fresh["access_token"] != regrouped["access_token"]
        old = reusing.post(
            "/oidc/token",
            data={
                "grant_type": "client_credentials",
                "client_id": account["clientId"],
                "client_secret": account["clientSecret"],
            },
        )
        assert old.status_code == 401

        # nor a revoke and re-activate (the held token is dead)
        account = {**account, "clientSecret": rotated["clientSecret"]}
        assert reusing.post(f"{base}/revoke", headers=bearer(admin)).status_code == 200
        assert reusing.post(f"{base}/activate", headers=bearer(admin)).status_code == 200
        revived = _token(reusing, account)
        assert revived["access_token"] != fresh["access_token"]
        assert (
            reusing.get(f"{API}/structures", headers=bearer(revived["access_token"])).status_code
            == 200
        )


def test_without_reuse_every_request_gets_a_new_token(factory: Factory) -> None:
    factory.workspace()
    account = factory.service_account(factory.admin())
    first = factory.token_response(account["clientId"], account["clientSecret"]).json()
    second = factory.token_response(account["clientId"], account["clientSecret"]).json()
    assert first["access_token"] != second["access_token"]


def _revoke(client: TestClient, account: dict[str, Any], token: str) -> None:
    r = client.post(
        "/oidc/revoke",
        data={
            "client_id": account["clientId"],
            "client_secret": account["clientSecret"],
            "token": token,
        },
    )
    assert r.status_code == 200, r.text


def test_token_reuse_never_hands_out_a_revoked_token(
    factory: Factory, client_for: ClientFor
) -> None:
    """A token revoked through /oidc/revoke is not handed out again, by the instance that
    revoked it nor by another instance of the store, which never heard of the revoke."""
    factory.workspace()
    account = factory.service_account(factory.admin())
    with (
        client_for(token_reuse_seconds=60) as one,
        client_for(token_reuse_seconds=60) as other,
    ):
        held = _token(one, account)["access_token"]
        held_elsewhere = _token(other, account)["access_token"]
        assert _token(one, account)["access_token"] == held  # reuse is on
        assert _token(other, account)["access_token"] == held_elsewhere

        _revoke(one, account, held)
        renewed = _token(one, account)["access_token"]
        assert renewed != held
        assert _token(one, account)["access_token"] == renewed  # the new one is reused
        assert one.get(f"{API}/structures", headers=bearer(held)).status_code == 401
        assert one.get(f"{API}/structures", headers=bearer(renewed)).status_code == 200

        # Revoked by the first instance; the second still held it in memory.
        _revoke(one, account, held_elsewhere)
        renewed_elsewhere = _token(other, account)["access_token"]
        assert renewed_elsewhere not in (held_elsewhere, renewed)
        assert other.get(f"{API}/structures", headers=bearer(renewed_elsewhere)).status_code == 200
        assert _token(other, account)["access_token"] == renewed_elsewhere
        # The first instance's token was left alone.
        assert _token(one, account)["access_token"] == renewed
