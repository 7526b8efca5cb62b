"""Human sign-in: the OpenID Connect provider's use cases over the store.

- public clients: the built-in console (``centrali-console``, redirect URI
  ``{issuer}/console/callback``), and those registered with ``centrali client create-public``;
- browser sessions: a signed-in user at the provider, so ``/oidc/authorize`` can skip the
  password for them; ended by logout, by a new password, or by time (``session_ttl``);
- authorization codes and refresh-token chains: ``OidcStore`` is the store behind the token
  endpoint's user grants (``centrali.oauth.user_ports.UserGrantStore``).

Every function here blocks on the store (and ``check_password`` on argon2id): the web layer
calls them from worker threads.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from centrali.config import Settings
from centrali.oauth.authorize import CODE_TTL, AuthorizationRequest, check_redirect_uri
from centrali.oauth.grants import IssuerConfig, TokenResponse
from centrali.oauth.opaque_tokens import new_opaque_token, plausible_token, token_digest
from centrali.oauth.ports import Clock
from centrali.oauth.token_endpoint import PreparedTokenRequest, complete_user_grant_request
from centrali.oauth.tokens import VerifiedToken
from centrali.oauth.user_ports import (
    CodeRecord,
    NewRefreshToken,
    PublicClient,
    RefreshRecord,
    UserGrantContext,
    UserStanding,
)
from centrali.services.context import utcnow
from centrali.services.errors import ConflictError, InvalidBodyError
from centrali.store import oidc_queries as q
from centrali.store import repositories as repo
from centrali.store.client_store import StoreUnavailableError
from centrali.store.db import Database
from centrali.store.oidc_queries import WorkspaceChoice
from centrali.store.tables import (
    AuthorizationCode,
    BrowserSession,
    PublicClientRow,
    RefreshToken,
    User,
)

CONSOLE_CLIENT_ID = "centrali-console"
_PUBLIC_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# The store is down, unreachable, locked past the busy timeout, or its pool is exhausted.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)

__all__ = [
    "CONSOLE_CLIENT_ID",
    "OidcStore",
    "SignIn",
    "WorkspaceChoice",
    "complete_user_grant",
    "console_client",
    "end_sign_ins",
    "find_sign_in",
    "issue_code",
    "register_public_client",
    "start_sign_in",
    "user_grant_context",
    "user_info",
    "workspaces_of",
]


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# --- public clients ---------------------------------------------------------------------------


def console_client(issuer: str) -> PublicClient:
    """The built-in console client: exists without registration, follows the issuer."""
    return PublicClient(
        client_id=CONSOLE_CLIENT_ID,
        redirect_uris=(f"{issuer}/console/callback",),
        post_logout_redirect_uris=(f"{issuer}/console/signed-out", f"{issuer}/console"),
        name="Centrali console",
    )


def _public_client(row: PublicClientRow) -> PublicClient:
    return PublicClient(
        client_id=row.client_id,
        redirect_uris=tuple(row.redirect_uris),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris or ()),
        name=row.name,
    )


def register_public_client(
    db: Database,
    *,
    client_id: str,
    redirect_uris: Sequence[str],
    post_logout_redirect_uris: Sequence[str] = (),
    name: str | None = None,
) -> PublicClient:
    """Register a public client (PKCE, no secret) with its exact redirect URIs."""
    if not _PUBLIC_CLIENT_ID.fullmatch(client_id) or client_id.startswith("ci_"):
        raise InvalidBodyError(
            "client id must be 1-128 letters, digits or . _ : - (and not start with ci_)",
            field="client_id",
        )
    if client_id == CONSOLE_CLIENT_ID:
        raise ConflictError(f"client {client_id!r} is built in")
    if not redirect_uris:
        raise InvalidBodyError("at least one redirect URI is required", field="redirect_uri")
    try:
        uris = [check_redirect_uri(u) for u in dict.fromkeys(redirect_uris)]
        after = [check_redirect_uri(u) for u in dict.fromkeys(post_logout_redirect_uris)]
    except ValueError as exc:
        raise InvalidBodyError(str(exc), field="redirect_uri") from exc
    label = (name or client_id).strip()[:200] or client_id
    try:
        with db.write() as session:
            if q.get_public_client(session, client_id=client_id) is not None:
                raise ConflictError(f"client {client_id!r} already exists")
            row = PublicClientRow(
                client_id=client_id,
                name=label,
                redirect_uris=uris,
                post_logout_redirect_uris=after,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _public_client(row)
    except IntegrityError as exc:
        raise ConflictError(f"client {client_id!r} already exists") from exc


# --- the store behind the user grants ---------------------------------------------------------


class OidcStore:
    """``UserGrantStore`` over the database; each method is one transaction."""

    def __init__(self, db: Database, issuer: str) -> None:
        self._db = db
        self._console = console_client(issuer)

    def find_public_client(self, client_id: str) -> PublicClient | None:
        if client_id == CONSOLE_CLIENT_ID:
            return self._console
        with self._db.read() as session:
            row = q.get_public_client(session, client_id=client_id)
            return None if row is None else _public_client(row)

    def find_code(self, code_hash: str) -> CodeRecord | None:
        with self._db.read() as session:
            row = q.find_code(session, code_hash=code_hash)
        if row is None:
            return None
        code = row.code
        return CodeRecord(
            chain_id=code.id,
            client_id=code.client_id,
            subject=row.subject,
            workspace=row.workspace,
            redirect_uri=code.redirect_uri,
            code_challenge=code.code_challenge,
            nonce=code.nonce,
            scope=code.scope,
            auth_time=int(code.auth_time.timestamp()),
            expires_at=code.expires_at.timestamp(),
            consumed=code.consumed_at is not None or code.revoked_at is not None,
            sid=row.sid,
        )

    def redeem_code(self, code_hash: str, refresh: NewRefreshToken, now: float) -> bool:
        at = _at(now)
        with self._db.write() as session:
            code = q.lock_code(session, code_hash=code_hash)
            if code is None:
                return False
            if code.consumed_at is not None or code.revoked_at is not None:
                q.revoke_chains(session, chain_ids=[code.id], now=at)
                return False
            code.consumed_at = at
            session.add(_refresh_row(code.id, refresh, at))
            return True

    def find_refresh_token(self, token_hash: str) -> RefreshRecord | None:
        with self._db.read() as session:
            row = q.find_refresh_token(session, token_hash=token_hash)
        if row is None:
            return None
        token, code = row.token, row.code
        return RefreshRecord(
            chain_id=code.id,
            client_id=code.client_id,
            subject=row.subject,
            workspace=row.workspace,
            scope=token.scope,
            auth_time=int(code.auth_time.timestamp()),
            expires_at=token.expires_at.timestamp(),
            spent=token.used_at is not None or code.revoked_at is not None,
            sid=row.sid,
        )

    def rotate_refresh_token(self, token_hash: str, refresh: NewRefreshToken, now: float) -> bool:
        at = _at(now)
        with self._db.write() as session:
            old = q.get_refresh_token(session, token_hash=token_hash)
            if old is None:
                return False
            chain_id = old.chain_id
            head = q.lock_chain(session, chain_id=chain_id)
            if head is None:
                return False
            # After the lock: a rotation or a revocation committed meanwhile is seen here.
            if head.revoked_at is not None or not q.mark_refresh_used(
                session, token_id=old.id, now=at
            ):
                q.revoke_chains(session, chain_ids=[chain_id], now=at)
                return False
            session.add(_refresh_row(chain_id, refresh, at))
            return True

    def revoke_chain(self, chain_id: int, now: float) -> None:
        with self._db.write() as session:
            q.revoke_chains(session, chain_ids=[chain_id], now=_at(now))

    def user_standing(self, subject: str, workspace: str) -> UserStanding | None:
        with self._db.read() as session:
            user = q.get_user_by_subject(session, subject=subject)
            if user is None:
                return None
            member = q.member_groups(session, user_id=user.id, workspace_slug=workspace)
            if member is None:
                return None
            return UserStanding(user.subject, user.email, workspace, member.groups)


def _refresh_row(chain_id: int, refresh: NewRefreshToken, at: datetime) -> RefreshToken:
    return RefreshToken(
        token_hash=refresh.token_hash,
        chain_id=chain_id,
        scope=refresh.scope,
        created_at=at,
        expires_at=_at(refresh.expires_at),
        access_jti=refresh.access_jti,
        access_expires_at=refresh.access_expires_at,
    )


def user_grant_context(db: Database, settings: Settings) -> UserGrantContext:
    """The token endpoint's user grants over ``db``, with the lifetimes of ``settings``."""
    return UserGrantContext(
        store=OidcStore(db, settings.issuer),
        access_ttl=settings.user_token_ttl,
        refresh_ttl=settings.refresh_token_ttl,
    )


def find_public_client(store: OidcStore, client_id: str) -> PublicClient | None:
    """``store.find_public_client``; a store that does not answer is StoreUnavailableError."""
    try:
        return store.find_public_client(client_id)
    except _UNAVAILABLE as exc:
        raise StoreUnavailableError(type(exc).__name__) from exc


def complete_user_grant(
    prepared: PreparedTokenRequest,
    client: PublicClient,
    *,
    config: IssuerConfig,
    clock: Clock,
    db: Database,
    settings: Settings,
) -> TokenResponse:
    """A public client's authorization_code or refresh_token request, once the client is
    authenticated, to the end. Blocking (store writes): the token endpoint runs it in a
    worker thread. A store that does not answer is StoreUnavailableError (503)."""
    try:
        return complete_user_grant_request(
            prepared, client, config=config, clock=clock, users=user_grant_context(db, settings)
        )
    except _UNAVAILABLE as exc:
        raise StoreUnavailableError(type(exc).__name__) from exc


# --- browser sessions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignIn:
    """A live sign-in at the provider."""

    session_id: int
    sid: str
    user_id: int
    subject: str
    email: str
    auth_time: float


def start_sign_in(
    db: Database, *, user_id: int, ttl: int, now: float, refresh_ttl: int = 86400 * 90
) -> tuple[str, SignIn]:
    """A new session for the user: (the cookie value, the sign-in). Only the cookie's digest
    is stored. Sessions past their end are dropped on the way, but only once no refresh
    chain started from them can still be alive: logout finds a chain through its session."""
    cookie = new_opaque_token()
    sid = secrets.token_urlsafe(16)
    at = _at(now)
    with db.write() as session:
        q.purge_sessions(session, expired_before=at - timedelta(seconds=refresh_ttl + CODE_TTL))
        user = session.get(User, user_id)
        if user is None:
            raise InvalidBodyError("unknown user")
        row = BrowserSession(
            sid=sid,
            token_hash=token_digest(cookie),
            user_id=user_id,
            created_at=at,
            expires_at=at + timedelta(seconds=ttl),
        )
        session.add(row)
        session.flush()
        return cookie, SignIn(row.id, sid, user_id, user.subject, user.email, now)


def find_sign_in(db: Database, *, cookie: str | None, now: float) -> SignIn | None:
    """The live sign-in of a session cookie, or None."""
    if not plausible_token(cookie):
        return None
    assert cookie is not None
    with db.read() as session:
        found = q.find_live_session(session, token_hash=token_digest(cookie), now=_at(now))
        if found is None:
            return None
        row, user = found
        return SignIn(
            row.id, row.sid, user.id, user.subject, user.email, row.created_at.timestamp()
        )


def end_sign_ins(
    db: Database,
    *,
    cookie: str | None = None,
    sid: str | None = None,
    subject: str | None = None,
    now: float,
) -> bool:
    """Log out: end the session of the cookie and/or of ``sid`` (an ID token's), and revoke
    the refresh-token chains started from them. With ``subject`` (from an ID token hint),
    the cookie's session ends only if it is that user's. Returns whether the cookie is no
    longer a live sign-in (so the browser may drop it): False when it is another user's."""
    at = _at(now)
    cookie_done = True
    with db.write() as session:
        ids: list[int] = []
        if sid is not None:
            row = q.get_session_by_sid(session, sid=sid)
            if row is not None:
                ids.append(row.id)
        if plausible_token(cookie):
            assert cookie is not None
            found = q.find_live_session(session, token_hash=token_digest(cookie), now=at)
            if found is not None:
                if subject is None or found[1].subject == subject:
                    ids.append(found[0].id)
                else:
                    cookie_done = False
        q.end_sessions(session, session_ids=ids, now=at)
        q.revoke_chains(session, chain_ids=q.chains_of_sessions(session, session_ids=ids), now=at)
    return cookie_done


def workspaces_of(db: Database, *, user_id: int) -> list[WorkspaceChoice]:
    with db.read() as session:
        return q.user_workspaces(session, user_id=user_id)


# --- authorization codes ----------------------------------------------------------------------


def issue_code(
    db: Database,
    *,
    request: AuthorizationRequest,
    sign_in: SignIn,
    workspace: str,
    refresh_ttl: int,
    now: float,
) -> str | None:
    """A new authorization code (60 s, single use) for the signed-in user in ``workspace``;
    None when the user is not a member of it. Codes whose chains have surely ended are
    dropped on the way."""
    code = new_opaque_token()
    at = _at(now)
    with db.write() as session:
        member = q.member_groups(session, user_id=sign_in.user_id, workspace_slug=workspace)
        if member is None:
            return None
        q.purge_codes(session, expired_before=at - timedelta(seconds=refresh_ttl + CODE_TTL))
        session.add(
            AuthorizationCode(
                code_hash=token_digest(code),
                client_id=request.client_id,
                user_id=sign_in.user_id,
                workspace_id=member.workspace_id,
                session_id=sign_in.session_id,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
                nonce=request.nonce,
                scope=request.scope,
                auth_time=_at(sign_in.auth_time),
                created_at=at,
                expires_at=at + timedelta(seconds=CODE_TTL),
            )
        )
    return code


# --- userinfo ---------------------------------------------------------------------------------


def user_info(db: Database, token: VerifiedToken) -> dict[str, str] | None:
    """OpenID Connect Core §5.3 claims of a user access token's holder: ``sub``, ``email``,
    ``workspace``; None when the user is gone, no longer a member, or the token revoked."""
    with db.read() as session:
        member, _grants, revoked = repo.user_grants(
            session, subject=token.subject, workspace_slug=token.workspace, jti=token.jti or None
        )
        user = q.get_user_by_subject(session, subject=token.subject)
    if not member or revoked or user is None:
        return None
    return {"sub": user.subject, "email": user.email, "workspace": token.workspace}
