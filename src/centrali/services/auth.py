"""Who is calling the workspace API: token checks in one place, in a fixed order.

1. signature (our keys, RS256 only), ``typ``, ``iss``, ``aud``, ``exp``, required claims → 401
2. the token's workspace equals the path's → else 403 (before the workspace is looked up)
3. the account behind it: a service account neither revoked, deleted, nor revoked after
   this token was issued → else 401 ``token_revoked``; a user still a member → else 403
4. the token's own ``jti`` not revoked (RFC 7009) → else 401 ``token_revoked``; read in the
   same statement as step 3, so a request still costs one round trip (for a service
   account, one shared with the other requests of its event-loop turn: web.deps)
5. permissions from the groups both named in the token and still held in the store
"""

from __future__ import annotations

from dataclasses import dataclass

from centrali.oauth.keys import KeySet
from centrali.oauth.signing import WRONG_AUDIENCE, WRONG_ISSUER
from centrali.oauth.tokens import (
    InvalidTokenError,
    TokenExpiredError,
    VerifiedToken,
    revoked_by_account,
    verify_access_token,
)
from centrali.services.context import Principal
from centrali.services.errors import (
    ForbiddenError,
    NotFoundError,
    TokenExpiredApiError,
    TokenRevokedError,
    UnauthorizedError,
)
from centrali.store import repositories as repo
from centrali.store.db import Database

_MAX_TOKEN_LEN = 8192


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    keys: KeySet
    issuer: str
    audience: str


# The reasons a 401 gives (``Unauthorized: <reason>``; RFC 6750 ``error_description``).
NO_TOKEN = "no access token (send Authorization: Bearer <token>)"
NOT_BEARER = "the Authorization header is not a Bearer token (send Authorization: Bearer <token>)"


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1). No header, or
    another scheme: 401 naming no error (§3.1); a Bearer header without exactly one
    token of a sane length: 401 ``invalid_token``, malformed."""
    if not authorization or not authorization.strip():
        raise UnauthorizedError(NO_TOKEN, token_sent=False)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise UnauthorizedError(NOT_BEARER, token_sent=False)
    if not token:
        raise UnauthorizedError("malformed Authorization header: no token after Bearer")
    if " " in token:
        raise UnauthorizedError("malformed Authorization header: more than one token")
    if len(token) > _MAX_TOKEN_LEN:
        raise UnauthorizedError(f"malformed token: longer than {_MAX_TOKEN_LEN} characters")
    return token


def verify(token: str, policy: TokenPolicy, now: float) -> VerifiedToken:
    try:
        return verify_access_token(
            token, keys=policy.keys, issuer=policy.issuer, audience=policy.audience, now=now
        )
    except TokenExpiredError as exc:
        raise TokenExpiredApiError() from exc
    except InvalidTokenError as exc:
        raise UnauthorizedError(public_reason(exc, policy)) from exc


def public_reason(exc: InvalidTokenError, policy: TokenPolicy) -> str:
    """Why a token was refused, for the client: a wrong issuer or audience names the one
    this server wants (both are public: discovery, every token)."""
    if exc.description == WRONG_ISSUER:
        return f"{WRONG_ISSUER} (this server is {policy.issuer})"
    if exc.description == WRONG_AUDIENCE:
        return f"{WRONG_AUDIENCE} (this server accepts {policy.audience})"
    return exc.description


def check_token(
    *, authorization: str | None, workspace_slug: str, policy: TokenPolicy, now: float
) -> VerifiedToken:
    """Steps 1 and 2: the token itself, and its workspace against the path's (no store)."""
    token = verify(bearer_token(authorization), policy, now)
    if token.workspace != workspace_slug:
        raise ForbiddenError("Forbidden: token belongs to another workspace")
    return token


def service_account_key(token: VerifiedToken) -> tuple[str, str]:
    """What repositories.service_accounts_grants reads for this token: (client_id, jti)."""
    return token.subject, token.jti or ""


def service_account_principal(
    token: VerifiedToken, workspace_slug: str, found: repo.AccountGrants | None
) -> Principal:
    """Steps 3 to 5 for a service account's token, from its account row(s) in the store."""
    if found is None:
        raise TokenRevokedError()
    account, grants = found
    if (
        account.status != "active"
        or account.workspace != workspace_slug
        or revoked_by_account(token, epoch=account.tokens_epoch, cutoff_ms=account.tokens_cutoff_ms)
        or account.token_revoked
    ):
        raise TokenRevokedError()
    return _principal(token, workspace_slug, grants)


def user_principal(db: Database, token: VerifiedToken, workspace_slug: str) -> Principal:
    """Steps 3 to 5 for a user's token."""
    # Single-statement reads on the autocommit pool: no BEGIN/ROLLBACK, no ORM entities.
    with db.autocommit_engine.connect() as conn:
        if not repo.workspace_exists(conn, slug=workspace_slug):
            raise NotFoundError("Workspace not found")
        member, grants, token_revoked = repo.user_grants(
            conn, subject=token.subject, workspace_slug=workspace_slug, jti=token.jti
        )
    if not member:
        raise ForbiddenError("Forbidden: not a member of this workspace")
    if token_revoked:
        raise TokenRevokedError()
    return _principal(token, workspace_slug, grants)


def _principal(token: VerifiedToken, workspace_slug: str, grants: dict[str, set[str]]) -> Principal:
    # A group removed since the token was issued no longer counts; one added needs a new token.
    groups = tuple(g for g in token.groups if g in grants)
    permissions = frozenset(p for g in groups for p in grants[g])
    return Principal(
        subject=token.subject,
        workspace=workspace_slug,
        is_service_account=token.is_service_account,
        groups=groups,
        permissions=permissions,
        client_id=token.client_id,
    )


def require_permission(principal: Principal, permission: str) -> None:
    if permission not in principal.permissions:
        raise ForbiddenError(f"Forbidden: missing permission {permission}")


def require_user(principal: Principal) -> None:
    if principal.is_service_account:
        raise ForbiddenError("Forbidden: service accounts cannot manage service accounts")
