"""A held token that was revoked is never handed out again (issue 12, item 4): the grant says
when it answered from memory, the token endpoint asks the store's revoked tokens, and the
cache forgets a revoked one; the HTTP test, with two instances: tests/api/test_speedups.py."""

from __future__ import annotations

import time

from centrali.oauth.grants import ClientCredentialsGrant, IssuerConfig
from centrali.oauth.introspection import Revocation
from centrali.oauth.keys import KeySet
from centrali.oauth.reuse import TokenReuseCache
from centrali.oauth.tokens import IssuedToken
from centrali.services.workspaces import create_workspace
from centrali.store.db import Database
from centrali.store.revocation import SqlTokenStateStore, revoked_jtis
from tests.unit.oauth.fakes import AUDIENCE, ISSUER, NOW, FakeClock, make_client

KEY = ("ci_x", "openid", (1,), 0, "acme-corp", ())


def held(jti: str, now: float) -> IssuedToken:
    return IssuedToken(token=f"token-{jti}", expires_in=3600, jti=jti, issued_at=int(now))


def test_forget_drops_the_held_token_with_that_jti() -> None:
    now = time.time()
    cache = TokenReuseCache(60)
    cache.put(KEY, held("a", now))
    other = ("ci_y", *KEY[1:])
    cache.put(other, held("b", now))
    cache.forget("a")
    assert cache.get(KEY, now) is None
    assert cache.get(other, now) == held("b", now)


def test_the_grant_says_when_it_answered_from_memory(key_set: KeySet) -> None:
    config = IssuerConfig(
        keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=600, reuse=TokenReuseCache(60)
    )
    first = ClientCredentialsGrant().handle(make_client(), {}, config, FakeClock(NOW))
    again = ClientCredentialsGrant().handle(make_client(), {}, config, FakeClock(NOW + 1))
    assert first.reused_jti is None
    assert again.reused_jti is not None and again.access_token == first.access_token
    assert "reused_jti" not in again.body()
    assert config.reuse is not None
    config.reuse.forget(again.reused_jti)
    fresh = ClientCredentialsGrant().handle(make_client(), {}, config, FakeClock(NOW + 2))
    assert fresh.reused_jti is None and fresh.access_token != first.access_token


def test_revoked_jtis_reads_the_store_in_one_statement(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    assert revoked_jtis(db, ["some-jti"]) == [False]
    revocation = Revocation(
        jti="some-jti", client_id="ci_x", workspace="acme-corp", expires_at=int(time.time()) + 60
    )
    SqlTokenStateStore(db).record_revocation(revocation, now=int(time.time()))
    assert revoked_jtis(db, ["another", "some-jti", "some-jti"]) == [False, True, True]


def test_a_store_that_does_not_answer_means_no_reuse() -> None:
    """Unknown counts as revoked: the client gets a new token (which needs no store)."""
    db = Database("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    try:
        assert revoked_jtis(db, ["a", "b"]) == [True, True]
    finally:
        db.dispose()
