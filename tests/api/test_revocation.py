"""POST /oidc/revoke over HTTP (RFC 7009; contract "Operations and security"): what it
answers, what it records in revoked_tokens, and that the workspace API refuses a revoked
token at once. Client authentication and the form rules: tests/api/test_introspection.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx2 as httpx  # the client library of Starlette's TestClient
import jwt
import pytest
from sqlalchemy import func, insert, select

from centrali.config import Settings
from centrali.oauth.introspection import Revocation
from centrali.oauth.tokens import TokenSubject, issue_access_token
from centrali.services.keys import load_key_set
from centrali.store.db import Database
from centrali.store.revocation import PRUNE_BATCH, PRUNE_GRACE_SECONDS, add_revoked_token
from centrali.store.tables import RevokedToken, Workspace
from tests.factories import Factory, bearer

REVOKE = "/oidc/revoke"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN_REVOKED = {"error": "token_revoked", "message": "Token revoked"}
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"
STRUCTURES = "/workspace/acme-corp/api/v1/structures"


@pytest.fixture
def admin(factory: Factory) -> str:
    factory.workspace()
    return factory.admin()


@pytest.fixture
def account(factory: Factory, admin: str) -> dict[str, Any]:
    return factory.service_account(admin, name="Holder")


def revoke(factory: Factory, caller: dict[str, Any], token: str, **form: str) -> httpx.Response:
    body = urlencode(
        {"client_id": caller["clientId"], "client_secret": caller["clientSecret"], "token": token}
        | form
    )
    return factory.client.post(REVOKE, content=body.encode(), headers=FORM)


def assert_revoked_answer(response: httpx.Response) -> None:
    """RFC 7009 §2.2: 200, nothing in the body; and never cached."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("pragma") == "no-cache"


def rows(db: Database) -> list[RevokedToken]:
    with db.read() as session:
        return list(session.scalars(select(RevokedToken).order_by(RevokedToken.jti)))


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# --- revoking -------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_by_the_workspace_api_at_once(
    factory: Factory, account: dict[str, Any]
) -> None:
    token, other = factory.sa_token(account), factory.sa_token(account)
    assert factory.client.get(STRUCTURES, headers=bearer(token)).status_code == 200
    assert_revoked_answer(revoke(factory, account, token))
    r = factory.client.get(STRUCTURES, headers=bearer(token))
    assert r.status_code == 401
    assert r.json() == TOKEN_REVOKED
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    # Only that token: the account's other tokens and new ones still work.
    assert factory.client.get(STRUCTURES, headers=bearer(other)).status_code == 200
    fresh = factory.sa_token(account)
    assert factory.client.get(STRUCTURES, headers=bearer(fresh)).status_code == 200


def test_revoking_records_the_jti_until_the_token_expires(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    token = factory.sa_token(account)
    before = datetime.now(UTC).replace(microsecond=0)
    assert_revoked_answer(revoke(factory, account, token))
    claims = claims_of(token)
    (row,) = rows(db)
    with db.read() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.slug == "acme-corp"))
    assert (row.jti, row.client_id, row.workspace_id, row.expires_at) == (
        claims["jti"],
        account["clientId"],
        workspace_id,
        claims["exp"],
    )
    assert before <= row.revoked_at <= datetime.now(UTC)


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "something_else"])
def test_any_hint_revokes_the_access_token(
    factory: Factory, db: Database, account: dict[str, Any], hint: str
) -> None:
    token = factory.sa_token(account)
    assert_revoked_answer(revoke(factory, account, token, token_type_hint=hint))
    assert [r.jti for r in rows(db)] == [claims_of(token)["jti"]]


def test_revoking_twice_is_200_and_one_row(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    token = factory.sa_token(account)
    assert_revoked_answer(revoke(factory, account, token))
    first = rows(db)[0].revoked_at
    assert_revoked_answer(revoke(factory, account, token))
    assert [(r.jti, r.revoked_at) for r in rows(db)] == [(claims_of(token)["jti"], first)]


def test_basic_authentication_revokes_too(factory: Factory, account: dict[str, Any]) -> None:
    token = factory.sa_token(account)
    r = factory.client.post(
        REVOKE,
        content=urlencode({"token": token}).encode(),
        headers=FORM,
        auth=(account["clientId"], account["clientSecret"]),
    )
    assert_revoked_answer(r)
    assert factory.client.get(STRUCTURES, headers=bearer(token)).json() == TOKEN_REVOKED


# --- nothing to revoke ----------------------------------------------------------------------


def _expired(factory: Factory, db: Database, settings: Settings, account: dict[str, Any]) -> str:
    who = TokenSubject(
        subject=account["clientId"],
        client_id=account["clientId"],
        workspace="acme-corp",
        is_service_account=True,
        groups=("api-users",),
        scope="openid",
    )
    return issue_access_token(
        who,
        keys=load_key_set(db),
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=60,
        now=time.time() - 120,
    ).token


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda f, d, s, a: "not-a-jwt", id="malformed"),
        pytest.param(lambda f, d, s, a: f.sa_token(a)[:-4] + "AAAA", id="bad-signature"),
        pytest.param(_expired, id="expired"),
        pytest.param(lambda f, d, s, a: "x" * 9000, id="huge"),
    ],
)
def test_an_invalid_or_expired_token_is_200_and_records_nothing(
    factory: Factory, db: Database, settings: Settings, account: dict[str, Any], make_token: Any
) -> None:
    token = make_token(factory, db, settings, account)
    assert_revoked_answer(revoke(factory, account, token))
    assert rows(db) == []


# --- another client's token -----------------------------------------------------------------


def test_a_token_of_another_client_is_unauthorized_client(
    factory: Factory, db: Database, admin: str, account: dict[str, Any]
) -> None:
    peer = factory.service_account(admin, name="Peer")
    token = factory.sa_token(account)
    r = revoke(factory, peer, token)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "unauthorized_client",
        "error_description": "The token was not issued to this client",
    }
    assert r.headers.get("cache-control") == "no-store"
    assert rows(db) == []
    assert factory.client.get(STRUCTURES, headers=bearer(token)).status_code == 200


def test_a_token_of_another_workspace_is_unauthorized_client(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    factory.workspace("globex")
    outsider = factory.service_account(factory.admin("globex"), workspace="globex")
    r = revoke(factory, outsider, factory.sa_token(account))
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    assert rows(db) == []


def test_a_user_token_cannot_be_revoked_by_a_service_account(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    token = factory.user_token()
    r = revoke(factory, account, token)
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    assert rows(db) == []


# --- user tokens at the workspace API -------------------------------------------------------


def test_a_revoked_user_token_is_refused_by_the_api(factory: Factory, db: Database) -> None:
    factory.workspace()
    token, other = factory.admin(), factory.admin()
    claims = claims_of(token)
    with db.write() as session:
        revocation = Revocation(claims["jti"], claims["client_id"], "acme-corp", claims["exp"])
        add_revoked_token(session, revocation=revocation, now=datetime.now(UTC))
    for path in (STRUCTURES, ACCOUNTS):
        r = factory.client.get(path, headers=bearer(token))
        assert r.status_code == 401, r.text
        assert r.json() == TOKEN_REVOKED
        assert factory.client.get(path, headers=bearer(other)).status_code == 200


def test_a_revoked_account_token_is_refused_on_management_routes_too(
    factory: Factory, account: dict[str, Any]
) -> None:
    token = factory.sa_token(account)
    assert factory.client.get(ACCOUNTS, headers=bearer(token)).status_code == 403
    assert_revoked_answer(revoke(factory, account, token))
    assert factory.client.get(ACCOUNTS, headers=bearer(token)).json() == TOKEN_REVOKED


# --- pruning --------------------------------------------------------------------------------


def _seed(db: Database, **expiries: int) -> None:
    with db.write() as session:
        session.execute(
            insert(RevokedToken),
            [
                {
                    "jti": jti,
                    "workspace_id": None,
                    "client_id": "ci_seed",
                    "expires_at": exp,
                    "revoked_at": datetime.now(UTC),
                }
                for jti, exp in expiries.items()
            ],
        )


def test_revoking_prunes_rows_of_tokens_long_expired(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    now = int(time.time())
    _seed(
        db,
        long_expired=now - PRUNE_GRACE_SECONDS - 60,
        just_expired=now - 5,  # kept a while: another server's clock may run behind
        alive=now + 3600,
    )
    token = factory.sa_token(account)
    assert_revoked_answer(revoke(factory, account, token))
    assert sorted(r.jti for r in rows(db)) == sorted(
        ["just_expired", "alive", claims_of(token)["jti"]]
    )


def test_pruning_is_bounded_per_revocation(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    old = int(time.time()) - PRUNE_GRACE_SECONDS - 3600
    _seed(db, **{f"old{i:04d}": old + i for i in range(PRUNE_BATCH + 20)})
    assert_revoked_answer(revoke(factory, account, factory.sa_token(account)))
    with db.read() as session:
        left = session.scalar(
            select(func.count())
            .select_from(RevokedToken)
            .where(RevokedToken.expires_at < old + 10_000)
        )
    assert left == 20
    assert_revoked_answer(revoke(factory, account, factory.sa_token(account)))
    assert len(rows(db)) == 2  # only the two live revocations remain


def test_nothing_is_pruned_without_a_revocation(
    factory: Factory, db: Database, account: dict[str, Any]
) -> None:
    _seed(db, ancient=1)
    token = factory.sa_token(account)
    assert_revoked_answer(revoke(factory, account, "not-a-jwt"))
    assert factory.client.get(STRUCTURES, headers=bearer(token)).status_code == 200
    assert [r.jti for r in rows(db)] == ["ancient"]


def test_a_token_right_after_a_revoke_and_reactivation_in_the_same_second_works_at_once(
    factory: Factory, admin: str, account: dict[str, Any]
) -> None:
    """Revoke, activate and ask for a token within one wall-clock second: the new token is
    issued without waiting out the second (its iat falls just after the revocation cut-off,
    never in the future), the API and PyJWT without leeway accept it, and the token from
    before the revoke stays dead."""
    jwks = factory.client.get("/oidc/jwks").json()
    public = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}
    for _ in range(5):  # until the four steps fit in one second
        before = factory.sa_token(account)
        started = time.time()
        for action in ("revoke", "activate"):
            r = factory.client.post(f"{ACCOUNTS}/{account['id']}/{action}", headers=bearer(admin))
            assert r.status_code == 200, r.text
        r = factory.token_response(account["clientId"], account["clientSecret"])
        took = time.time() - started
        assert r.status_code == 200, r.text
        after = r.json()["access_token"]
        if int(time.time()) == int(started):
            break
    else:  # each try takes ~20 ms: only a server that waits out the second gets here
        pytest.fail("the token request never came in the second of the revoke")
    assert took < 0.5, f"the token request waited ({took:.2f} s)"
    claims = jwt.decode(
        after,
        public[jwt.get_unverified_header(after)["kid"]],
        algorithms=["RS256", "ES256", "EdDSA"],
        audience=factory.settings.audience,
        leeway=0,
    )
    assert int(claims["iat"]) == int(started)
    assert factory.client.get(STRUCTURES, headers=bearer(after)).status_code == 200
    r = factory.client.get(STRUCTURES, headers=bearer(before))
    assert (r.status_code, r.json()) == (401, TOKEN_REVOKED)


class _AheadClock:
    """An instance whose clock runs ``ahead`` seconds fast."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def now(self) -> float:
        return time.time() + self.ahead


def test_a_revoke_kills_tokens_of_an_instance_whose_clock_is_ahead(
    factory: Factory, admin: str, account: dict[str, Any], settings: Settings
) -> None:
    """Instance B's clock runs 30 s fast: its tokens carry an iat after the moment instance A
    revokes the account. A time cut-off would let them live; the account's token epoch,
    which the revoke moves on, kills them on both instances."""
    from fastapi.testclient import TestClient

    from centrali.web.app import create_app

    other_db = Database(settings.database_url)
    try:
        with TestClient(create_app(settings, db=other_db), base_url=settings.issuer) as skewed:
            skewed.app.app.state.runtime.clock = _AheadClock(30.0)  # type: ignore[attr-defined]
            r = skewed.post(
                "/oidc/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": account["clientId"],
                    "client_secret": account["clientSecret"],
                },
            )
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
            assert jwt.decode(token, options={"verify_signature": False})["iat"] > time.time()
            assert factory.client.get(STRUCTURES, headers=bearer(token)).status_code == 200
            r = factory.client.post(f"{ACCOUNTS}/{account['id']}/revoke", headers=bearer(admin))
            assert r.status_code == 200, r.text
            for instance in (factory.client, skewed):
                r = instance.get(STRUCTURES, headers=bearer(token))
                assert (r.status_code, r.json()) == (401, TOKEN_REVOKED)
    finally:
        other_db.dispose()
