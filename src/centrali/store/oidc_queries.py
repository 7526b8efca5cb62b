"""Queries of the OpenID Connect provider for users: public clients, browser sessions,
authorization codes and refresh-token chains. Like ``repositories``: they take a Session,
never commit, and return rows or None.

Chains are serialized on their head, the authorization-code row: redeeming the code, rotating
a refresh token and revoking the chain each lock that row first (``FOR UPDATE`` on
PostgreSQL; SQLite write transactions are serialized by ``BEGIN IMMEDIATE``), so a token
rotated while its chain is revoked is either refused or revoked with it, never left alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from centrali.store.tables import (
    AuthorizationCode,
    BrowserSession,
    Group,
    Membership,
    MembershipGroup,
    PublicClientRow,
    RefreshToken,
    RevokedToken,
    User,
    Workspace,
)

# --- public clients -------------------------------------------------------------------------


def get_public_client(session: Session, *, client_id: str) -> PublicClientRow | None:
    stmt = select(PublicClientRow).where(PublicClientRow.client_id == client_id)
    return session.scalars(stmt).one_or_none()


# --- users and their workspaces ---------------------------------------------------------------


def get_user_by_subject(session: Session, *, subject: str) -> User | None:
    return session.scalars(select(User).where(User.subject == subject)).one_or_none()


class WorkspaceChoice(NamedTuple):
    slug: str
    name: str


def user_workspaces(session: Session, *, user_id: int) -> list[WorkspaceChoice]:
    """The workspaces the user is a member of, by slug."""
    stmt = (
        select(Workspace.slug, Workspace.name)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id)
        .order_by(Workspace.slug)
    )
    return [WorkspaceChoice(slug, name) for slug, name in session.execute(stmt)]


class MemberGroups(NamedTuple):
    workspace_id: int
    groups: tuple[str, ...]


def member_groups(session: Session, *, user_id: int, workspace_slug: str) -> MemberGroups | None:
    """The user's groups in the workspace (sorted), or None when not a member."""
    stmt = (
        select(Membership.workspace_id, Group.name)
        .join(Workspace, Workspace.id == Membership.workspace_id)
        .outerjoin(MembershipGroup, MembershipGroup.membership_id == Membership.id)
        .outerjoin(Group, Group.id == MembershipGroup.group_id)
        .where(Membership.user_id == user_id, Workspace.slug == workspace_slug)
    )
    rows = session.execute(stmt).all()
    if not rows:
        return None
    names = sorted({name for _, name in rows if name is not None})
    return MemberGroups(rows[0][0], tuple(names))


# --- browser sessions -------------------------------------------------------------------------


def find_live_session(
    session: Session, *, token_hash: str, now: datetime
) -> tuple[BrowserSession, User] | None:
    stmt = (
        select(BrowserSession, User)
        .join(User, User.id == BrowserSession.user_id)
        .where(
            BrowserSession.token_hash == token_hash,
            BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > now,
        )
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def get_session_by_sid(session: Session, *, sid: str) -> BrowserSession | None:
    return session.scalars(select(BrowserSession).where(BrowserSession.sid == sid)).one_or_none()


def end_sessions(session: Session, *, session_ids: Sequence[int], now: datetime) -> None:
    if session_ids:
        session.execute(
            update(BrowserSession)
            .where(BrowserSession.id.in_(session_ids), BrowserSession.ended_at.is_(None))
            .values(ended_at=now)
        )


def live_session_ids_of_user(session: Session, *, user_id: int) -> list[int]:
    stmt = select(BrowserSession.id).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None)
    )
    return list(session.scalars(stmt))


def purge_sessions(session: Session, *, expired_before: datetime) -> None:
    """Drop sessions past their end; their codes keep their chains (``session_id`` NULL)."""
    session.execute(delete(BrowserSession).where(BrowserSession.expires_at < expired_before))


# --- authorization codes: the heads of the refresh chains -------------------------------------


class CodeRow(NamedTuple):
    code: AuthorizationCode
    subject: str
    workspace: str
    sid: str | None


def find_code(session: Session, *, code_hash: str) -> CodeRow | None:
    stmt = (
        select(AuthorizationCode, User.subject, Workspace.slug, BrowserSession.sid)
        .join(User, User.id == AuthorizationCode.user_id)
        .join(Workspace, Workspace.id == AuthorizationCode.workspace_id)
        .outerjoin(BrowserSession, BrowserSession.id == AuthorizationCode.session_id)
        .where(AuthorizationCode.code_hash == code_hash)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else CodeRow(row[0], row[1], row[2], row[3])


def lock_chain(session: Session, *, chain_id: int) -> AuthorizationCode | None:
    """The chain's head, locked until the transaction ends."""
    stmt = select(AuthorizationCode).where(AuthorizationCode.id == chain_id).with_for_update()
    return session.scalars(stmt).one_or_none()


def lock_code(session: Session, *, code_hash: str) -> AuthorizationCode | None:
    stmt = (
        select(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash).with_for_update()
    )
    return session.scalars(stmt).one_or_none()


def purge_codes(session: Session, *, expired_before: datetime) -> None:
    """Drop codes (and with them their chains' refresh tokens) expired before the time."""
    session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < expired_before))


def chains_of_sessions(session: Session, *, session_ids: Sequence[int]) -> list[int]:
    if not session_ids:
        return []
    stmt = select(AuthorizationCode.id).where(
        AuthorizationCode.session_id.in_(session_ids), AuthorizationCode.revoked_at.is_(None)
    )
    return list(session.scalars(stmt))


def chains_of_user(session: Session, *, user_id: int) -> list[int]:
    stmt = select(AuthorizationCode.id).where(
        AuthorizationCode.user_id == user_id, AuthorizationCode.revoked_at.is_(None)
    )
    return list(session.scalars(stmt))


def revoke_chains(session: Session, *, chain_ids: Sequence[int], now: datetime) -> None:
    """Mark the chains revoked (which kills every refresh token of them) and revoke, by jti,
    the access tokens issued with their refresh tokens that have not expired yet."""
    if not chain_ids:
        return
    ids = sorted(set(chain_ids))  # one lock order for everyone: no deadlock between revokers
    session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id.in_(ids), AuthorizationCode.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    live = session.execute(
        select(
            RefreshToken.access_jti,
            RefreshToken.access_expires_at,
            AuthorizationCode.client_id,
            AuthorizationCode.workspace_id,
        )
        .join(AuthorizationCode, AuthorizationCode.id == RefreshToken.chain_id)
        .where(
            RefreshToken.chain_id.in_(ids),
            RefreshToken.access_expires_at > int(now.timestamp()),
        )
    ).all()
    if not live:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(RevokedToken).values(
        [
            {
                "jti": jti,
                "workspace_id": workspace_id,
                "client_id": client_id,
                "expires_at": expires_at,
                "revoked_at": now,
            }
            for jti, expires_at, client_id, workspace_id in live
        ]
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["jti"]))


# --- refresh tokens -----------------------------------------------------------------------------


class RefreshRow(NamedTuple):
    token: RefreshToken
    code: AuthorizationCode
    subject: str
    workspace: str
    sid: str | None


def find_refresh_token(session: Session, *, token_hash: str) -> RefreshRow | None:
    stmt = (
        select(RefreshToken, AuthorizationCode, User.subject, Workspace.slug, BrowserSession.sid)
        .join(AuthorizationCode, AuthorizationCode.id == RefreshToken.chain_id)
        .join(User, User.id == AuthorizationCode.user_id)
        .join(Workspace, Workspace.id == AuthorizationCode.workspace_id)
        .outerjoin(BrowserSession, BrowserSession.id == AuthorizationCode.session_id)
        .where(RefreshToken.token_hash == token_hash)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else RefreshRow(row[0], row[1], row[2], row[3], row[4])


def get_refresh_token(session: Session, *, token_hash: str) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    return session.scalars(stmt).one_or_none()


def mark_refresh_used(session: Session, *, token_id: int, now: datetime) -> bool:
    """Mark the token used; False when it already was (the statement is the check)."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
