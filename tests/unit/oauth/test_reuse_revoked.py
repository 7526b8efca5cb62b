"""The token reuse cache asks the store's revoked tokens before it hands out a held token
(issue 12, item 4); the HTTP test, with two instances: tests/api/test_speedups.py."""

from __future__ import annotations

import time

from centrali.oauth.introspection import Revocation
from centrali.oauth.reuse import TokenReuseCache
from centrali.oauth.tokens import IssuedToken
from centrali.services.workspaces import create_workspace
from centrali.store.db import Database
from centrali.store.revocation import SqlTokenStateStore, jti_revoked

KEY = ("ci_x", "openid", (1,), 0, "acme-corp", ())


def held(jti: str, now: float) -> IssuedToken:
    return IssuedToken(token=f"token-{jti}", expires_in=3600, jti=jti, issued_at=int(now))


def test_a_held_token_is_asked_about_and_forgotten_once_revoked() -> None:
    revoked: set[str] = set()
    asked: list[str] = []

    def is_revoked(jti: str) -> bool:
        asked.append(jti)
        return jti in revoked

    now = time.time()
    cache = TokenReuseCache(60, revoked=is_revoked)
    cache.put(KEY, held("a", now))
    assert cache.get(KEY, now) == held("a", now)
    revoked.add("a")
    assert cache.get(KEY, now) is None
    assert asked == ["a", "a"]
    assert cache.get(KEY, now) is None and asked == ["a", "a"]  # forgotten: not asked again


def test_jti_revoked_reads_the_store(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    assert jti_revoked(db, "some-jti") is False
    revocation = Revocation(
        jti="some-jti", client_id="ci_x", workspace="acme-corp", expires_at=int(time.time()) + 60
    )
    SqlTokenStateStore(db).record_revocation(revocation, now=int(time.time()))
    assert jti_revoked(db, "some-jti") is True
    assert jti_revoked(db, "another-jti") is False


def test_a_store_that_does_not_answer_means_no_reuse() -> None:
    """Unknown counts as revoked: the client gets a new token (which needs no store)."""
    db = Database("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    try:
        assert jti_revoked(db, "some-jti") is True
    finally:
        db.dispose()
