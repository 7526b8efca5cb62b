"""JWT access tokens: minting and verification (RFC 7519, RFC 9068, RFC 8725); the JWS work
is ``signing.sign_jwt`` and ``signing.decode_jwt``.

Verification accepts only the algorithms we sign with, only keys from our own key set
(looked up by ``kid``), and only ``typ: at+jwt``: an ID token or a token signed with a
symmetric key made from our public key is refused (RFC 8725 §2.1, §3.1, §3.11).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from centrali.oauth.keys import KeySet
from centrali.oauth.signing import InvalidTokenError as InvalidTokenError
from centrali.oauth.signing import TokenError as TokenError
from centrali.oauth.signing import TokenExpiredError as TokenExpiredError
from centrali.oauth.signing import UnknownKeyError as UnknownKeyError
from centrali.oauth.signing import decode_jwt, sign_jwt

ACCESS_TOKEN_TYP = "at+jwt"
_ACCEPTED_TYPS = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ("sub", "iss", "aud", "iat", "exp", "workspace", "isServiceAccount")
# The claim that carries a service account's token epoch (TokenSubject.epoch).
ACCOUNT_EPOCH = "accountEpoch"


@dataclass(frozen=True, slots=True)
class TokenSubject:
    """Who a token is for; the same shape for users and service accounts."""

    subject: str
    client_id: str
    workspace: str
    is_service_account: bool
    groups: Sequence[str]
    scope: str
    # A service account's token epoch (claim ACCOUNT_EPOCH): the token dies when the account's
    # epoch moves past it (a revoke, a delete, a rotation with revokeTokens).
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    jti: str
    issued_at: int


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The checked claims of a presented access token."""

    subject: str
    client_id: str
    workspace: str
    is_service_account: bool
    groups: tuple[str, ...]
    scope: str
    issued_at: int | float
    expires_at: int
    jti: str
    claims: dict[str, Any]

    @property
    def epoch(self) -> int | None:
        """The service account's token epoch the token was issued at (None: no claim)."""
        value = self.claims.get(ACCOUNT_EPOCH)
        return value if _is_int(value) else None


def issue_access_token(
    who: TokenSubject,
    *,
    keys: KeySet,
    issuer: str,
    audience: str,
    ttl: int,
    now: float,
) -> IssuedToken:
    """Sign an RS256 access token for ``who``; ``exp`` = ``iat`` + ``ttl``."""
    iat = int(now)
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": issuer,
        "sub": who.subject,
        "aud": audience,
        "iat": iat,
        "exp": iat + ttl,
        "jti": jti,
        "client_id": who.client_id,
        "scope": who.scope,
        "workspace": who.workspace,
        "isServiceAccount": "true" if who.is_service_account else "false",
        "groups": list(who.groups),
    }
    if who.epoch is not None:
        claims[ACCOUNT_EPOCH] = who.epoch
    token = sign_jwt(claims, keys.signing.signer, typ=ACCESS_TOKEN_TYP)
    return IssuedToken(token=token, expires_in=ttl, jti=jti, issued_at=iat)


def verify_access_token(
    token: str, *, keys: KeySet, issuer: str, audience: str, now: float, leeway: int = 0
) -> VerifiedToken:
    """Check signature, ``typ``, ``iss``, ``aud``, ``exp`` and required claims."""
    return verify_with_public_keys(
        token, keys.public_keys, issuer=issuer, audience=audience, now=now, leeway=leeway
    )


def verify_with_public_keys(
    token: str,
    public_keys: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: int = 0,
) -> VerifiedToken:
    """As verify_access_token, with the issuer's public keys by ``kid`` (e.g. from a JWKS)."""
    claims = decode_jwt(token, public_keys, typs=_ACCEPTED_TYPS, issuer=issuer, audience=audience)
    return _check_claims(claims, now=now, leeway=leeway)


def _check_claims(claims: dict[str, Any], *, now: float, leeway: int) -> VerifiedToken:
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise InvalidTokenError(
            f"missing claims: {', '.join(missing)}",
            f"malformed token: claims missing ({', '.join(missing)})",
        )
    exp, iat = claims["exp"], claims["iat"]
    if not _is_int(exp) or not _is_number(iat):
        raise InvalidTokenError(
            "exp not an integer or iat not a number", "malformed token: exp or iat not a number"
        )
    flag = claims["isServiceAccount"]
    groups = claims.get("groups", [])
    fields_ok = (
        isinstance(claims["sub"], str)
        and isinstance(claims["workspace"], str)
        and flag in ("true", "false")
        and isinstance(groups, list)
        and all(isinstance(g, str) for g in groups)
    )
    if not fields_ok:
        raise InvalidTokenError(
            "claims of the wrong type", "malformed token: claims of the wrong type"
        )
    if exp <= now - leeway:
        raise TokenExpiredError("expired")
    if iat > now + leeway + 60:
        raise InvalidTokenError("issued in the future", "issued in the future (iat)")
    return VerifiedToken(
        subject=claims["sub"],
        client_id=str(claims.get("client_id", claims["sub"])),
        workspace=claims["workspace"],
        is_service_account=flag == "true",
        groups=tuple(groups),
        scope=str(claims.get("scope", "")),
        issued_at=iat,
        expires_at=exp,
        jti=str(claims.get("jti", "")),
        claims=claims,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value)
    )


def cut_off(issued_at: float, cutoff_ms: int) -> bool:
    """Whether a token issued at ``issued_at`` (epoch seconds, maybe with a fraction) died
    with an account's revocation cut-off (epoch ms: iat at or below it is dead)."""
    return cutoff_ms > 0 and round(issued_at * 1000) <= cutoff_ms


def revoked_by_account(token: VerifiedToken, *, epoch: int, cutoff_ms: int) -> bool:
    """Whether the account's revocations since ``token`` was issued killed it. A token with
    an ``accountEpoch`` claim died when the account's epoch moved past it: exact, whatever
    the clocks of the issuing and the revoking instance say. A token without one (issued
    before the claim existed) died at the time cut-off."""
    if token.epoch is not None:
        return token.epoch < epoch
    return cut_off(token.issued_at, cutoff_ms)
