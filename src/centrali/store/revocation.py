"""Revoked access tokens (RFC 7009) in ``revoked_tokens``, and the store behind
introspection and revocation (``centrali.oauth.introspection.TokenStateStore``).

A row lives until its token's ``exp`` has passed, plus a grace period for servers whose clock
runs behind; each revocation removes a bounded batch of rows past that point, in the same
transaction, so the table holds about the tokens revoked and still alive.

The per-request check of the workspace API does not come through here: it folds the
``jti`` lookup into its one account statement (repositories.service_account_grants).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from centrali.oauth.introspection import Revocation, TokenStanding
from centrali.oauth.tokens import VerifiedToken
from centrali.store import repositories as repo
from centrali.store.client_store import StoreUnavailableError
from centrali.store.db import Database
from centrali.store.tables import RevokedToken, Workspace

# A server whose clock is this far behind still sees a pruned token as expired.
PRUNE_GRACE_SECONDS = 300
PRUNE_BATCH = 100
# The store is down, unreachable, locked past the busy timeout, or its pool is exhausted.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)


def add_revoked_token(session: Session, *, revocation: Revocation, now: datetime) -> None:
    """Insert the revocation; a jti already there is left as it is (revoking is idempotent)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    workspace_id = select(Workspace.id).where(Workspace.slug == revocation.workspace)
    stmt = insert(RevokedToken).values(
        jti=revocation.jti,
        workspace_id=workspace_id.scalar_subquery(),
        client_id=revocation.client_id,
        expires_at=revocation.expires_at,
        revoked_at=now,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["jti"]))


def prune_revoked_tokens(session: Session, *, expired_before: int, limit: int = PRUNE_BATCH) -> int:
    """Delete up to ``limit`` rows of tokens whose ``exp`` is before ``expired_before``."""
    # SKIP LOCKED (PostgreSQL; SQLite writers are serialized anyway): two revocations pruning
    # at once take disjoint batches instead of waiting on, or deadlocking over, each other.
    batch = (
        select(RevokedToken.jti)
        .where(RevokedToken.expires_at < expired_before)
        .order_by(RevokedToken.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(delete(RevokedToken).where(RevokedToken.jti.in_(batch)))
    return int(getattr(result, "rowcount", 0) or 0)


def revoked_jtis(db: Database, jtis: Sequence[str]) -> list[bool]:
    """Whether each ``jti`` is in revoked_tokens, in one statement (the token reuse cache
    asks before it hands out a held token; web.runtime gathers the questions of the moment).
    A store that does not answer counts as revoked: the caller then signs a new token, which
    needs no store."""
    try:
        with db.autocommit_engine.connect() as conn:
            stmt = select(RevokedToken.jti).where(RevokedToken.jti.in_(set(jtis)))
            found = set(conn.execute(stmt).scalars())
    except _UNAVAILABLE:
        return [True] * len(jtis)
    return [jti in found for jti in jtis]


class SqlTokenStateStore:
    """TokenStateStore over the store: one statement to read, one transaction to revoke."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def token_standing(self, token: VerifiedToken) -> TokenStanding | None:
        try:
            return self._token_standing(token)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc

    def record_revocation(self, revocation: Revocation, *, now: int) -> None:
        try:
            with self._db.write() as session:
                add_revoked_token(
                    session, revocation=revocation, now=datetime.fromtimestamp(now, UTC)
                )
                prune_revoked_tokens(session, expired_before=now - PRUNE_GRACE_SECONDS)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc

    def _token_standing(self, token: VerifiedToken) -> TokenStanding | None:
        # The same single statements as the workspace API's check (services.auth).
        with self._db.autocommit_engine.connect() as conn:
            if token.is_service_account:
                found = repo.service_account_grants(conn, client_id=token.subject, jti=token.jti)
                if found is None:
                    return None
                account = found[0]
                return TokenStanding(
                    workspace=account.workspace,
                    active=account.status == "active",
                    tokens_cutoff_ms=account.tokens_cutoff_ms,
                    tokens_epoch=account.tokens_epoch,
                    jti_revoked=account.token_revoked,
                )
            member = repo.user_grants(
                conn, subject=token.subject, workspace_slug=token.workspace, jti=token.jti
            )
        if not member.member:
            return None
        return TokenStanding(
            workspace=token.workspace, active=True, jti_revoked=member.token_revoked
        )
