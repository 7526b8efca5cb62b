"""Users, their membership of workspaces, their passwords, and user access tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrali.oauth.keys import KeySet
from centrali.oauth.tokens import IssuedToken, TokenSubject, issue_access_token
from centrali.services import passwords
from centrali.services.context import utcnow
from centrali.services.errors import ConflictError, InvalidBodyError, NotFoundError
from centrali.services.validation import normalize_email
from centrali.services.workspaces import require_workspace
from centrali.store import oidc_queries as oidc_repo
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import Membership, MembershipGroup, User

CLI_CLIENT_ID = "centrali-cli"


@dataclass(frozen=True, slots=True)
class UserView:
    subject: str
    email: str
    workspace: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberView:
    """Who a user subject in a workspace's audit log is: the console shows the email."""

    subject: str
    email: str


def list_members(db: Database, *, workspace_slug: str) -> list[MemberView]:
    """The workspace's members (subject and email), by email."""
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        stmt = (
            select(User.subject, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace.id)
            .order_by(User.email)
        )
        return [MemberView(subject, email) for subject, email in session.execute(stmt)]


def create_user(
    db: Database,
    *,
    email: str,
    workspace_slug: str,
    groups: Sequence[str] = (),
    password: str | None = None,
) -> UserView:
    """A new user, member of one workspace, in the given groups (none when empty), with a
    password to sign in with when one is given."""
    email = normalize_email(email)
    # The slow hash before the transaction: the write lock is not held while it runs.
    password_hash = None if password is None else passwords.hash_password(password)
    try:
        with db.write() as session:
            workspace = require_workspace(session, workspace_slug)
            if repo.get_user_by_email(session, email=email) is not None:
                raise ConflictError(f"user {email!r} already exists")
            found = repo.get_groups_by_name(session, workspace_id=workspace.id, names=groups)
            unknown = sorted(set(groups) - found.keys())
            if unknown:
                raise InvalidBodyError(f"unknown group: {unknown[0]!r}", field="groups")
            now = utcnow()
            user = User(
                subject=str(uuid.uuid4()), email=email, password_hash=password_hash, created_at=now
            )
            session.add(user)
            session.flush()
            _join(
                session,
                workspace_id=workspace.id,
                user_id=user.id,
                group_ids=[g.id for g in found.values()],
            )
            return UserView(user.subject, email, workspace.slug, tuple(sorted(found)))
    except IntegrityError as exc:
        raise ConflictError(f"user {email!r} already exists") from exc


def add_member(
    db: Database, *, email: str, workspace_slug: str, groups: Sequence[str] = ()
) -> UserView:
    """Make an existing user a member of a workspace (idempotent), adding groups."""
    email = normalize_email(email)
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        user = repo.get_user_by_email(session, email=email)
        if user is None:
            raise NotFoundError(f"user {email!r} not found")
        found = repo.get_groups_by_name(session, workspace_id=workspace.id, names=groups)
        unknown = sorted(set(groups) - found.keys())
        if unknown:
            raise InvalidBodyError(f"unknown group: {unknown[0]!r}", field="groups")
        membership = repo.get_membership(session, workspace_id=workspace.id, user_id=user.id)
        if membership is None:
            _join(
                session,
                workspace_id=workspace.id,
                user_id=user.id,
                group_ids=[g.id for g in found.values()],
            )
        else:
            have = set(repo.membership_group_names(session, membership_id=membership.id))
            session.add_all(
                MembershipGroup(membership_id=membership.id, group_id=g.id)
                for name, g in found.items()
                if name not in have
            )
        session.flush()
        membership = repo.get_membership(session, workspace_id=workspace.id, user_id=user.id)
        assert membership is not None
        names = repo.membership_group_names(session, membership_id=membership.id)
        return UserView(user.subject, email, workspace.slug, tuple(names))


def _join(session: Session, *, workspace_id: int, user_id: int, group_ids: list[int]) -> None:
    membership = Membership(workspace_id=workspace_id, user_id=user_id, created_at=utcnow())
    session.add(membership)
    session.flush()
    session.add_all(MembershipGroup(membership_id=membership.id, group_id=g) for g in group_ids)


def get_member(db: Database, *, email: str, workspace_slug: str) -> UserView:
    email = normalize_email(email)
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        user = repo.get_user_by_email(session, email=email)
        membership = (
            None
            if user is None
            else repo.get_membership(session, workspace_id=workspace.id, user_id=user.id)
        )
        if user is None or membership is None:
            raise NotFoundError(f"user {email!r} is not a member of workspace {workspace_slug!r}")
        names = repo.membership_group_names(session, membership_id=membership.id)
        return UserView(user.subject, user.email, workspace.slug, tuple(names))


def issue_user_token(
    user: UserView,
    *,
    keys: KeySet,
    issuer: str,
    audience: str,
    ttl: int,
    now: float,
    client_id: str = CLI_CLIENT_ID,
    scope: str = "openid",
) -> IssuedToken:
    """A user access token: the same minting code as service-account tokens."""
    who = TokenSubject(
        subject=user.subject,
        client_id=client_id,
        workspace=user.workspace,
        is_service_account=False,
        groups=user.groups,
        scope=scope,
    )
    return issue_access_token(who, keys=keys, issuer=issuer, audience=audience, ttl=ttl, now=now)


def set_password(db: Database, *, email: str, password: str) -> str:
    """Set (or replace) the user's password; returns the user's subject.

    A new password also ends the user's sign-ins at the provider and revokes the refresh
    tokens (and their access tokens) issued to them: whoever knew the old password is out."""
    email = normalize_email(email)
    password_hash = passwords.hash_password(password)
    with db.write() as session:
        user = repo.get_user_by_email(session, email=email)
        if user is None:
            raise NotFoundError(f"user {email!r} not found")
        _replace_password(session, user, password_hash)
        return user.subject


def _replace_password(session: Session, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    now = utcnow()
    oidc_repo.end_sessions(
        session,
        session_ids=oidc_repo.live_session_ids_of_user(session, user_id=user.id),
        now=now,
    )
    oidc_repo.revoke_chains(
        session, chain_ids=oidc_repo.chains_of_user(session, user_id=user.id), now=now
    )


def bootstrap_admin(
    db: Database, *, workspace_slug: str, email: str, password: str | None = None
) -> UserView:
    """The workspace (unless it exists) and EMAIL as its admin, in one transaction after
    every input was checked: a bad email, slug or password leaves the store as it was.
    Idempotent; an existing user joins the admin group (and gets the new password)."""
    from centrali.services.permissions import ADMIN_GROUP
    from centrali.services.validation import check_slug
    from centrali.services.workspaces import insert_workspace

    check_slug(workspace_slug)
    email = normalize_email(email)
    password_hash = None if password is None else passwords.hash_password(password)
    try:
        with db.write() as session:
            workspace = repo.get_workspace(session, slug=workspace_slug)
            if workspace is None:
                workspace = insert_workspace(session, slug=workspace_slug, name=workspace_slug)
            admins = repo.get_groups_by_name(
                session, workspace_id=workspace.id, names=[ADMIN_GROUP]
            )
            if ADMIN_GROUP not in admins:
                raise InvalidBodyError(f"workspace {workspace_slug!r} has no {ADMIN_GROUP} group")
            admin_id = admins[ADMIN_GROUP].id
            user = repo.get_user_by_email(session, email=email)
            if user is None:
                user = User(
                    subject=str(uuid.uuid4()),
                    email=email,
                    password_hash=password_hash,
                    created_at=utcnow(),
                )
                session.add(user)
                session.flush()
            elif password_hash is not None:
                _replace_password(session, user, password_hash)
            membership = repo.get_membership(session, workspace_id=workspace.id, user_id=user.id)
            if membership is None:
                _join(session, workspace_id=workspace.id, user_id=user.id, group_ids=[admin_id])
            elif ADMIN_GROUP not in repo.membership_group_names(
                session, membership_id=membership.id
            ):
                session.add(MembershipGroup(membership_id=membership.id, group_id=admin_id))
            session.flush()
            membership = repo.get_membership(session, workspace_id=workspace.id, user_id=user.id)
            assert membership is not None
            names = repo.membership_group_names(session, membership_id=membership.id)
            return UserView(user.subject, user.email, workspace.slug, tuple(names))
    except IntegrityError as exc:  # another bootstrap of the same names at the same moment
        raise ConflictError(
            f"workspace {workspace_slug!r} or user {email!r} was created meanwhile: run again"
        ) from exc


@dataclass(frozen=True, slots=True)
class SignedInUser:
    id: int
    subject: str
    email: str


def check_password(db: Database, *, email: str, password: str) -> SignedInUser | None:
    """The user whose email and password these are, or None. Slow (argon2id) whatever the
    outcome: an unknown or malformed email costs the same check as a wrong password.
    Blocking: call it from a worker thread."""
    try:
        email = normalize_email(email)
    except InvalidBodyError:
        email = ""
    user = None
    if email:
        with db.read() as session:
            user = repo.get_user_by_email(session, email=email)
    stored = user.password_hash if user is not None else None
    if not passwords.verify_password(password, stored) or user is None or stored is None:
        return None
    if passwords.needs_rehash(stored):
        new_hash = passwords.rehash_password(password)
        with db.write() as session:
            found = repo.get_user_by_email(session, email=email)
            if found is not None and found.password_hash == stored:
                found.password_hash = new_hash
    return SignedInUser(id=user.id, subject=user.subject, email=user.email)
