"""JWT access tokens: minting and verification (RFC 7519, RFC 9068, RFC 8725).

Verification accepts only the algorithms we sign with, only keys from our own key set
(looked up by ``kid``), and only ``typ: at+jwt``: an ID token or a token signed with a
symmetric key made from our public key is refused (RFC 8725 §2.1, §3.1, §3.11).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from centrali.oauth.keys import SUPPORTED_ALGS, KeySet, alg_for_key

ACCESS_TOKEN_TYP = "at+jwt"
# Accepted in a header at all; each key then verifies only its own algorithm (alg_for_key).
ALLOWED_ALGS = SUPPORTED_ALGS
_ACCEPTED_TYPS = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ("sub", "iss", "aud", "iat", "exp", "workspace", "isServiceAccount")


@dataclass(frozen=True, slots=True)
class TokenSubject:
    """Who a token is for; the same shape for users and service accounts."""

    subject: str
    client_id: str
    workspace: str
    is_service_account: bool
    groups: Sequence[str]
    scope: str


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
    issued_at: int
    expires_at: int
    jti: str
    claims: dict[str, Any]


class TokenError(Exception):
    """A presented token was refused; ``reason`` is for logs, never the wire."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidTokenError(TokenError):
    """Missing, malformed, forged, foreign or otherwise unacceptable."""


class UnknownKeyError(InvalidTokenError):
    """Signed with a ``kid`` we do not know (a verifier may refetch the JWKS once)."""


class TokenExpiredError(TokenError):
    """Genuine, but past its ``exp``."""


def issue_access_token(
    who: TokenSubject, *, keys: KeySet, issuer: str, audience: str, ttl: int, now: float
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
    key = keys.signing
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm=key.alg,
        headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYP},
    )
    return IssuedToken(token=token, expires_in=ttl, jti=jti, issued_at=iat)


def verify_access_token(
    token: str, *, keys: KeySet, issuer: str, audience: str, now: float, leeway: int = 0
) -> VerifiedToken:
    """Check signature, ``typ``, ``iss``, ``aud``, ``exp`` and required claims."""
    return verify_with_public_keys(
        token, keys.public_keys, issuer=issuer, audience=audience, now=now, leeway=leeway
    )


def verification_key(
    token: str, public_keys: Mapping[str, Any], *, typs: frozenset[str]
) -> tuple[Any, str]:
    """The key (and its one algorithm) that must have signed ``token``, from its header: an
    algorithm of ours (never ``none`` or HMAC), a ``typ`` in ``typs``, a ``kid`` we publish,
    and the header's ``alg`` equal to that key's. Every JWS we read goes through here."""
    if not token.isascii():  # a compact JWS is base64url and dots only (RFC 7515 §7.1)
        raise InvalidTokenError("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError("malformed token") from exc
    if header.get("alg") not in ALLOWED_ALGS:
        raise InvalidTokenError(f"algorithm not accepted: {header.get('alg')!r}")
    if header.get("typ") not in typs:
        raise InvalidTokenError(f"unexpected typ: {header.get('typ')!r}")
    kid = header.get("kid")
    key = public_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise UnknownKeyError("unknown kid")
    alg = alg_for_key(key)
    if header["alg"] != alg:
        raise InvalidTokenError(f"algorithm {header['alg']!r} does not match the key ({alg})")
    return key, alg


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
    key, alg = verification_key(token, public_keys, typs=_ACCEPTED_TYPS)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            issuer=issuer,
            audience=audience,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(type(exc).__name__) from exc
    return _check_claims(claims, now=now, leeway=leeway)


def _check_claims(claims: dict[str, Any], *, now: float, leeway: int) -> VerifiedToken:
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise InvalidTokenError(f"missing claims: {', '.join(missing)}")
    exp, iat = claims["exp"], claims["iat"]
    if not _is_int(exp) or not _is_int(iat):
        raise InvalidTokenError("exp/iat not integers")
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
        raise InvalidTokenError("claims of the wrong type")
    if exp <= now - leeway:
        raise TokenExpiredError("expired")
    if iat > now + leeway + 60:
        raise InvalidTokenError("issued in the future")
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
