"""Token introspection (RFC 7662) and revocation (RFC 7009) of our JWT access tokens.

Both endpoints take a form with ``token`` and an optional ``token_type_hint`` from a client
authenticated as at the token endpoint (RFC 6749 §2.3.1). The checks, in order:

read the form (``token`` present) → authenticate the client (``client_auth``, the same
pipeline as the token endpoint's: credentials by one method, abuse limits, failure counts) →
verify the token (signature, ``typ``, ``iss``, ``aud``, ``exp``) → then

- introspect: the caller is of the token's workspace or is the token's own client, and the
  holder still holds the token (account active, not cut off by a revoke after ``iat``, user
  still a member, ``jti`` not revoked) → ``{"active": true, ...claims}``; anything else is
  ``{"active": false}`` and nothing more (RFC 7662 §2.2).
- revoke: a token that does not verify (unknown, forged, expired) needs nothing (§2.2); one
  issued to another client is refused with ``unauthorized_client`` (§2.1); otherwise its
  ``jti`` is recorded until its ``exp``.

Revocation also takes a refresh token (``rt_…``, issued to public clients, which
authenticate with their ``client_id`` alone, method ``none``): the token's owner revokes its
whole chain, and the access tokens the chain issued with it. The token is recognised by its
form, so ``token_type_hint`` is not needed; an unknown hint is ignored (RFC 7009 §2.1,
RFC 7662 §2.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from centrali.oauth.errors import InvalidRequestError, UnauthorizedClientError
from centrali.oauth.grants import REFRESH_TOKEN_PREFIX, IssuerConfig
from centrali.oauth.opaque_tokens import plausible_token, token_digest
from centrali.oauth.ports import ClientRecord
from centrali.oauth.tokens import (
    TokenError,
    VerifiedToken,
    revoked_by_account,
    verify_access_token,
)
from centrali.oauth.user_ports import PublicClient, RefreshRecord

TOKEN_TYPE_HINTS = ("access_token", "refresh_token")
# A longer value cannot be one of our tokens; it is not even parsed.
_MAX_TOKEN_LEN = 8192
# The revoked_tokens column; our own jtis are 22 characters.
_MAX_JTI_LEN = 64


@dataclass(frozen=True, slots=True)
class TokenStanding:
    """What the store says now about whoever a token was issued to."""

    # The service account's workspace, or the one the user is still a member of.
    workspace: str
    # A service account neither revoked nor deleted; always True for a member.
    active: bool
    # A service account's token epoch and time cut-off (tokens.revoked_by_account).
    tokens_cutoff_ms: int = 0
    tokens_epoch: int = 0
    # The token's own ``jti`` was revoked (RFC 7009).
    jti_revoked: bool = False


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked access token, kept until its own ``exp``."""

    jti: str
    client_id: str
    workspace: str
    expires_at: int


class TokenStateStore(Protocol):
    def token_standing(self, token: VerifiedToken) -> TokenStanding | None:
        """The holder's state and whether the jti is revoked; None when the service account
        or the user's membership of the token's workspace does not exist. One round trip."""
        ...

    def record_revocation(self, revocation: Revocation, *, now: int) -> None:
        """Remember ``revocation`` (idempotent) and drop records of tokens long expired."""
        ...


@dataclass(frozen=True, slots=True)
class TokenActionRequest:
    """An introspection or revocation request, read from its form and Authorization header."""

    token: str
    token_type_hint: str | None


@dataclass(frozen=True, slots=True)
class Introspection:
    """An introspection answer (RFC 7662 §2.2): the claims of an active token, or None."""

    claims: Mapping[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.claims is not None

    def body(self) -> dict[str, Any]:
        if self.claims is None:
            return {"active": False}
        claims = {k: v for k, v in self.claims.items() if k not in ("active", "token_type")}
        return {"active": True, **claims, "token_type": "Bearer"}


INACTIVE = Introspection()


class RefreshTokenStore(Protocol):
    def find_refresh_token(self, token_hash: str) -> RefreshRecord | None: ...

    def revoke_chain(self, chain_id: int, now: float) -> None: ...


def read_token_request(form: Mapping[str, str]) -> TokenActionRequest:
    """``token`` present; hint kept if known. The client's credentials are the
    authentication pipeline's (client_auth)."""
    token = form.get("token")
    if token is None:
        raise InvalidRequestError("Missing required parameter: token")
    hint = form.get("token_type_hint")
    return TokenActionRequest(
        token=token,
        token_type_hint=hint if hint in TOKEN_TYPE_HINTS else None,
    )


def token_is_live(token: VerifiedToken, standing: TokenStanding | None) -> bool:
    """Whether the holder still holds ``token``: the store's half of the token checks."""
    return (
        standing is not None
        and standing.active
        and standing.workspace == token.workspace
        and not revoked_by_account(
            token, epoch=standing.tokens_epoch, cutoff_ms=standing.tokens_cutoff_ms
        )
        and not standing.jti_revoked
    )


def introspect(
    request: TokenActionRequest,
    caller: ClientRecord,
    *,
    tokens: TokenStateStore,
    config: IssuerConfig,
    now: float,
) -> Introspection:
    """RFC 7662 §2.2 for an authenticated ``caller``; every refusal is ``active: false``."""
    token = _verify(request.token, config, now)
    if token is None:
        return INACTIVE
    # Open to the token's workspace and its own client; to anyone else it does not exist.
    if caller.workspace != token.workspace and caller.client_id != token.client_id:
        return INACTIVE
    if not token_is_live(token, tokens.token_standing(token)):
        return INACTIVE
    return Introspection(token.claims)


def revoke(
    request: TokenActionRequest,
    caller: ClientRecord | PublicClient,
    *,
    tokens: TokenStateStore,
    config: IssuerConfig,
    now: float,
    refresh_tokens: RefreshTokenStore | None = None,
) -> None:
    """RFC 7009 §2.1 for an authenticated ``caller``; returns when there is nothing to do."""
    if request.token.startswith(REFRESH_TOKEN_PREFIX):
        if refresh_tokens is not None and plausible_token(request.token):
            found = refresh_tokens.find_refresh_token(token_digest(request.token))
            if found is not None:
                if found.client_id != caller.client_id:
                    raise UnauthorizedClientError(
                        "The token was not issued to this client", detail="revoke: foreign chain"
                    )
                refresh_tokens.revoke_chain(found.chain_id, now)
        return
    token = _verify(request.token, config, now)
    if token is None:
        return  # §2.2: an invalid or expired token needs no revoking
    if token.client_id != caller.client_id:
        # §2.1: only the client a token was issued to may revoke it. This tells a client
        # that a token it holds is genuine, which the token's own signature tells it anyway.
        raise UnauthorizedClientError(
            "The token was not issued to this client", detail="revoke: foreign token"
        )
    if not token.jti or len(token.jti) > _MAX_JTI_LEN:
        return  # never the case for our tokens; nothing to record it under
    revocation = Revocation(
        jti=token.jti,
        client_id=token.client_id,
        workspace=token.workspace,
        expires_at=token.expires_at,
    )
    tokens.record_revocation(revocation, now=int(now))


def _verify(raw: str, config: IssuerConfig, now: float) -> VerifiedToken | None:
    if len(raw) > _MAX_TOKEN_LEN or not raw.isascii():  # a JWS compact form is ASCII
        return None
    try:
        return verify_access_token(
            raw, keys=config.keys, issuer=config.issuer, audience=config.audience, now=now
        )
    except TokenError:
        return None
