"""Grant handlers keyed by ``grant_type``: client_credentials (RFC 6749 §4.4) for service
accounts; authorization_code (§4.1.3, RFC 7636 §4.6, OpenID Connect Core §3.1.3) and
refresh_token (§6, RFC 9700 §4.14.2) for users signed in through a public client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from centrali.oauth.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from centrali.oauth.id_token import IdTokenFacts, issue_id_token
from centrali.oauth.keys import KeySet
from centrali.oauth.opaque_tokens import new_opaque_token, plausible_token, token_digest
from centrali.oauth.pkce import verify_code_verifier
from centrali.oauth.ports import ClientRecord, Clock
from centrali.oauth.reuse import TokenReuseCache, reuse_key
from centrali.oauth.tokens import TokenSubject, issue_access_token
from centrali.oauth.user_ports import (
    NewRefreshToken,
    PublicClient,
    UserGrantContext,
    UserStanding,
)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token answer (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"
    # Only for users (authorization_code, refresh_token).
    refresh_token: str | None = None
    id_token: str | None = None
    # Set when the token was answered from the reuse cache (never sent): the caller checks
    # it was not revoked meanwhile (oauth.reuse).
    reused_jti: str | None = None

    def body(self) -> dict[str, str | int]:
        body: dict[str, str | int] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    keys: KeySet
    issuer: str
    audience: str
    ttl: int
    reuse: TokenReuseCache | None = None


class Grant(Protocol):
    grant_type: ClassVar[str]

    def handle(
        self, client: ClientRecord, form: Mapping[str, str], config: IssuerConfig, clock: Clock
    ) -> TokenResponse: ...


def resolve_scope(requested: str | None, allowed: tuple[str, ...]) -> str:
    """The granted scope: all of the client's scopes, or the requested subset of them."""
    if requested is None:
        return " ".join(allowed)
    wanted = requested.split()
    if not wanted or any(s not in allowed for s in wanted):
        raise InvalidScopeError()
    return " ".join(dict.fromkeys(wanted))


class ClientCredentialsGrant:
    grant_type: ClassVar[str] = "client_credentials"

    def handle(
        self, client: ClientRecord, form: Mapping[str, str], config: IssuerConfig, clock: Clock
    ) -> TokenResponse:
        if self.grant_type not in client.grant_types:
            raise UnauthorizedClientError()
        scope = resolve_scope(form.get("scope"), client.scopes)
        now = clock.now()
        who = TokenSubject(
            subject=client.client_id,
            client_id=client.client_id,
            workspace=client.workspace,
            is_service_account=True,
            groups=client.groups,
            scope=scope,
            epoch=client.tokens_epoch,
        )
        reuse = config.reuse
        if reuse is not None:
            held = reuse.get(reuse_key(client, scope), now)
            if held is not None:
                remaining = held.issued_at + held.expires_in - int(now)
                return TokenResponse(
                    access_token=held.token,
                    expires_in=remaining,
                    scope=scope,
                    reused_jti=held.jti,
                )
        issued = issue_access_token(
            who,
            keys=config.keys,
            issuer=config.issuer,
            audience=config.audience,
            ttl=config.ttl,
            now=now,
        )
        if reuse is not None:
            reuse.put(reuse_key(client, scope), issued)
        return TokenResponse(access_token=issued.token, expires_in=issued.expires_in, scope=scope)


# --- users, through a public client -----------------------------------------------------------

REFRESH_TOKEN_PREFIX = "rt_"
_BAD_CODE = "The authorization code is invalid, expired or already used"
_BAD_REFRESH = "The refresh token is invalid, expired or already used"


class UserGrant:
    """A grant that issues tokens to a signed-in user through a public client.

    Only these grants accept client authentication ``none`` (a registered public client's
    id, no secret: RFC 6749 §2.1, §3.2.1; PKCE stands in for the secret), and a public
    client may use no other grant. They read and write the store, so the caller runs them
    off the event loop.
    """

    grant_type: ClassVar[str]

    def handle(
        self,
        client: PublicClient,
        form: Mapping[str, str],
        config: IssuerConfig,
        clock: Clock,
        users: UserGrantContext,
    ) -> TokenResponse:
        raise NotImplementedError


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if value is None:
        raise InvalidRequestError(f"Missing required parameter: {name}")
    return value


@dataclass(frozen=True, slots=True)
class _Issue:
    """What a user grant mints: for whom, on which sign-in, until when the chain lives."""

    user: UserStanding
    scope: str
    auth_time: int
    nonce: str | None
    sid: str | None
    chain_expires_at: float
    # The chain's own scope, carried by the next refresh token: a narrowed refresh narrows
    # only its access token (RFC 6749 §6). None: the same as ``scope``.
    chain_scope: str | None = None


def _issue_user_tokens(
    client: PublicClient, what: _Issue, config: IssuerConfig, users: UserGrantContext, now: float
) -> tuple[TokenResponse, NewRefreshToken]:
    """An access token (the same JWT as a service account's, ``isServiceAccount: "false"``),
    an ID token for the client, and the next refresh token of the chain."""
    user = what.user
    who = TokenSubject(
        subject=user.subject,
        client_id=client.client_id,
        workspace=user.workspace,
        is_service_account=False,
        groups=user.groups,
        scope=what.scope,
    )
    access = issue_access_token(
        who,
        keys=config.keys,
        issuer=config.issuer,
        audience=config.audience,
        ttl=users.access_ttl,
        now=now,
    )
    facts = IdTokenFacts(
        subject=user.subject,
        client_id=client.client_id,
        email=user.email,
        auth_time=what.auth_time,
        nonce=what.nonce,
        sid=what.sid,
    )
    id_token = issue_id_token(
        facts,
        keys=config.keys,
        issuer=config.issuer,
        ttl=users.access_ttl,
        now=now,
        access_token=access.token,
    )
    refresh = new_opaque_token(REFRESH_TOKEN_PREFIX)
    record = NewRefreshToken(
        token_hash=token_digest(refresh),
        scope=what.chain_scope or what.scope,
        expires_at=what.chain_expires_at,
        access_jti=access.jti,
        access_expires_at=access.issued_at + access.expires_in,
    )
    response = TokenResponse(
        access_token=access.token,
        expires_in=access.expires_in,
        scope=what.scope,
        refresh_token=refresh,
        id_token=id_token,
    )
    return response, record


class AuthorizationCodeGrant(UserGrant):
    """Code for tokens (RFC 6749 §4.1.3): the code single-use and short-lived, issued to this
    client for this ``redirect_uri``, and the PKCE verifier matching its challenge.

    A code presented a second time revokes the chain it started (§4.1.2, RFC 9700 §4.5.3):
    whoever redeemed it first may not be the client. A failed check does not consume it.
    """

    grant_type: ClassVar[str] = "authorization_code"

    def handle(
        self,
        client: PublicClient,
        form: Mapping[str, str],
        config: IssuerConfig,
        clock: Clock,
        users: UserGrantContext,
    ) -> TokenResponse:
        code = _required(form, "code")
        redirect_uri = _required(form, "redirect_uri")
        verifier = _required(form, "code_verifier")
        store = users.store
        code_hash = token_digest(code)
        found = store.find_code(code_hash) if plausible_token(code) else None
        if found is None:
            raise InvalidGrantError(_BAD_CODE, detail="unknown code")
        now = clock.now()
        if found.consumed:
            store.revoke_chain(found.chain_id, now)
            raise InvalidGrantError(_BAD_CODE, detail="code reused: chain revoked")
        if found.client_id != client.client_id:
            raise InvalidGrantError(_BAD_CODE, detail="code of another client")
        if found.expires_at <= now:
            raise InvalidGrantError(_BAD_CODE, detail="code expired")
        if found.redirect_uri != redirect_uri:
            raise InvalidGrantError(_BAD_CODE, detail="redirect_uri differs")
        if not verify_code_verifier(verifier, found.code_challenge):
            raise InvalidGrantError(_BAD_CODE, detail="PKCE verifier does not match")
        user = store.user_standing(found.subject, found.workspace)
        if user is None:
            raise InvalidGrantError(_BAD_CODE, detail="user no longer a member")
        what = _Issue(
            user=user,
            scope=found.scope,
            auth_time=found.auth_time,
            nonce=found.nonce,
            sid=found.sid,
            chain_expires_at=now + users.refresh_ttl,
        )
        response, refresh = _issue_user_tokens(client, what, config, users, now)
        if not store.redeem_code(code_hash, refresh, now):
            raise InvalidGrantError(_BAD_CODE, detail="code reused concurrently: chain revoked")
        return response


class RefreshTokenGrant(UserGrant):
    """Refresh (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): each refresh token works once
    and is replaced; presenting a used one revokes the whole chain, its newest token
    included. The chain ends at sign-in + ``refresh_ttl`` (rotation does not extend it)."""

    grant_type: ClassVar[str] = "refresh_token"

    def handle(
        self,
        client: PublicClient,
        form: Mapping[str, str],
        config: IssuerConfig,
        clock: Clock,
        users: UserGrantContext,
    ) -> TokenResponse:
        token = _required(form, "refresh_token")
        store = users.store
        token_hash = token_digest(token)
        found = store.find_refresh_token(token_hash) if plausible_token(token) else None
        if found is None:
            raise InvalidGrantError(_BAD_REFRESH, detail="unknown refresh token")
        if found.client_id != client.client_id:
            raise InvalidGrantError(_BAD_REFRESH, detail="refresh token of another client")
        now = clock.now()
        if found.spent:
            store.revoke_chain(found.chain_id, now)
            raise InvalidGrantError(_BAD_REFRESH, detail="refresh token reused: chain revoked")
        if found.expires_at <= now:
            raise InvalidGrantError(_BAD_REFRESH, detail="refresh token expired")
        scope = resolve_scope(form.get("scope"), tuple(found.scope.split()))
        user = store.user_standing(found.subject, found.workspace)
        if user is None:
            raise InvalidGrantError(_BAD_REFRESH, detail="user no longer a member")
        what = _Issue(
            user=user,
            scope=scope,
            auth_time=found.auth_time,
            nonce=None,  # OpenID Connect Core §12.2: no nonce in a refreshed ID token
            sid=found.sid,
            chain_expires_at=found.expires_at,
            chain_scope=found.scope,
        )
        response, refresh = _issue_user_tokens(client, what, config, users, now)
        if not store.rotate_refresh_token(token_hash, refresh, now):
            raise InvalidGrantError(_BAD_REFRESH, detail="reused concurrently: chain revoked")
        return response


GRANTS: dict[str, Grant | UserGrant] = {
    ClientCredentialsGrant.grant_type: ClientCredentialsGrant(),
    AuthorizationCodeGrant.grant_type: AuthorizationCodeGrant(),
    RefreshTokenGrant.grant_type: RefreshTokenGrant(),
}
