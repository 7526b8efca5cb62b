"""Client authentication by JWT assertion (RFC 7523 §2.2, RFC 7521 §4.2; OpenID Connect
Core §9): the two methods of ``client_auth`` that take ``client_assertion``.

``private_key_jwt``: the client signs an assertion with one of its registered keys:
``iss`` = ``sub`` = its client_id, ``aud`` the token endpoint URL or the issuer, ``exp``
required and at most 600 s ahead, ``jti`` single use for the assertion's lifetime across
every worker and instance (``ReplayStore``), the key's own algorithm (never ``none`` or
HMAC), 60 s of clock skew either way.

Federated workloads: the assertion is a token an external OpenID Connect issuer gave a
workload (a CI job, a Kubernetes pod). It stands for the client when a live federated
credential of the client names exactly its ``iss`` and ``sub`` and its ``aud`` holds the
credential's audience, and its signature verifies with an asymmetric key the issuer
publishes (``IssuerKeys``: discovery → ``jwks_uri``). No ``jti`` single use: workloads reuse
their token until it expires. An issuer that cannot be reached is a 503, not a 401.

PyJWT does the parsing and the verification; this module chooses keys and checks claims.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import jwt

from centrali.oauth.client_auth import (
    BAD_ASSERTION,
    BAD_SIGNATURE,
    EXPIRED_ASSERTION,
    FEDERATED_JWT,
    INACTIVE_CLIENT,
    PRIVATE_KEY_JWT,
    REPLAYED_ASSERTION,
    UNKNOWN_CLIENT,
    UNKNOWN_ISSUER,
    Authenticated,
    ClientAuthMethod,
    ClientCredentials,
)
from centrali.oauth.errors import InvalidClientError, TemporarilyUnavailableError
from centrali.oauth.ports import FEDERATED, KEY, ClientKey, ClientRecord

# The algorithms a client key may have (oauth.jwk decides which key gets which).
KEY_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
# What an external issuer may sign with: asymmetric only.
ISSUER_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SKEW = 60
MAX_ASSERTION_LIFETIME = 600
_MAX_JTI = 256


class ReplayStore(Protocol):
    async def use_once(self, key: str, expires_at: float) -> bool:
        """Remember ``key`` until ``expires_at`` (epoch s); False when it was already
        remembered (a replay). Shared by every worker and instance."""
        ...


class IssuerUnavailableError(TemporarilyUnavailableError):
    """503: the issuer's discovery document or keys could not be read (nothing cached)."""

    description = "The identity provider of this credential cannot be reached; try again"

    def __init__(self, *, retry_after: int = 10, detail: str | None = None) -> None:
        super().__init__(None, detail=detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IssuerKeys(Protocol):
    async def find_key(self, issuer: str, kid: str | None) -> Mapping[str, Any] | None:
        """The issuer's public JWK with this ``kid`` (the only one when ``kid`` is None and
        it publishes one), found through ``{issuer}/.well-known/openid-configuration`` →
        ``jwks_uri`` and cached; an unknown kid refetches at most once a minute; None when
        the issuer publishes no such key. IssuerUnavailableError when it cannot be read."""
        ...


def _refuse(reason: str) -> InvalidClientError:
    return InvalidClientError(detail=reason)


@functools.lru_cache(maxsize=4096)
def _key_object(key_id: int, kid: str, alg: str, jwk_json: str) -> Any:
    """The loaded public key of a client key (ids are never reused, so (id, kid, alg, the
    JWK) names one key for good): parsing an RSA JWK costs more than verifying with it."""
    return jwt.PyJWK(json.loads(jwk_json), algorithm=alg).key


def _load(key: ClientKey) -> Any:
    return _key_object(key.id, key.kid, key.alg, json.dumps(dict(key.jwk), sort_keys=True))


def _header(assertion: str) -> tuple[str, str | None]:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise _refuse(BAD_ASSERTION) from exc
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
        raise _refuse(BAD_ASSERTION)
    return alg, kid


def _check_times(claims: Mapping[str, Any], now: float, *, skew: int) -> float:
    """``exp`` after now (less ``skew``); ``nbf`` and ``iat`` not more than SKEW ahead of
    now. Returns ``exp``."""
    exp = _numeric(claims, "exp")
    if exp is None:
        raise _refuse(BAD_ASSERTION)
    if exp <= now - skew:
        raise _refuse(EXPIRED_ASSERTION)
    for name in ("nbf", "iat"):
        at = _numeric(claims, name)
        if at is not None and at > now + SKEW:
            raise _refuse(EXPIRED_ASSERTION)
    return exp


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refuse(BAD_ASSERTION)
    return float(value)


class PrivateKeyJwt:
    """``private_key_jwt``: an assertion signed by one of the client's live keys."""

    name: ClassVar[str] = PRIVATE_KEY_JWT

    def __init__(self, *, audiences: Sequence[str], replay: ReplayStore) -> None:
        self.audiences = list(audiences)
        self.replay = replay

    async def verify(
        self, credentials: ClientCredentials, client: ClientRecord | None, now: float
    ) -> Authenticated:
        assertion = credentials.assertion or ""
        if client is None:
            raise _refuse(UNKNOWN_CLIENT)
        alg, kid = _header(assertion)
        if alg not in KEY_ALGORITHMS:
            raise _refuse(BAD_ASSERTION)
        # The header's kid picks the key; without one, every live key of that algorithm.
        keys = [k for k in client.keys if k.live(now) and k.alg == alg and kid in (None, k.kid)]
        claims: dict[str, Any] | None = None
        used: ClientKey | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    assertion,
                    _load(key),
                    algorithms=[key.alg],
                    audience=self.audiences,
                    issuer=client.client_id,
                    options={
                        "require": ["iss", "sub", "aud", "exp", "jti"],
                        "verify_exp": False,  # _check_times, against the pipeline's now
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise _refuse(BAD_ASSERTION) from exc
            used = key
            break
        if claims is None or used is None:
            raise _refuse(BAD_SIGNATURE)
        if claims.get("sub") != client.client_id:
            raise _refuse(BAD_ASSERTION)
        exp = _check_times(claims, now, skew=SKEW)
        if exp > now + MAX_ASSERTION_LIFETIME + SKEW:
            raise _refuse(EXPIRED_ASSERTION)  # a long-lived assertion is a stolen one waiting
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
            raise _refuse(BAD_ASSERTION)
        if not await self.replay.use_once(f"{client.client_id}\n{jti}", exp + SKEW):
            raise _refuse(REPLAYED_ASSERTION)
        if not client.active:
            raise _refuse(INACTIVE_CLIENT)
        return Authenticated(client, self.name, (KEY, used.id))


class FederatedJwt:
    """A workload's token from an external issuer that one of the client's live federated
    credentials trusts."""

    name: ClassVar[str] = FEDERATED_JWT

    def __init__(self, *, issuer_keys: IssuerKeys) -> None:
        self.issuer_keys = issuer_keys

    async def verify(
        self, credentials: ClientCredentials, client: ClientRecord | None, now: float
    ) -> Authenticated:
        assertion = credentials.assertion or ""
        if client is None:
            raise _refuse(UNKNOWN_CLIENT)
        alg, kid = _header(assertion)
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _refuse(BAD_ASSERTION) from exc
        iss, sub = unverified.get("iss"), unverified.get("sub")
        trusted = [
            f for f in client.federated if f.live(now) and f.issuer == iss and f.subject == sub
        ]
        if not trusted or not isinstance(iss, str):
            raise _refuse(UNKNOWN_ISSUER)
        if alg not in ISSUER_ALGORITHMS:
            raise _refuse(BAD_ASSERTION)
        jwk = await self.issuer_keys.find_key(iss, kid)
        if jwk is None:
            raise _refuse(BAD_SIGNATURE)
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=alg).key
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                issuer=iss,
                options={
                    "require": ["iss", "sub", "aud", "exp"],
                    "verify_aud": False,  # checked below against each credential
                    "verify_exp": False,  # _check_times, against the pipeline's now
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise _refuse(BAD_SIGNATURE) from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise _refuse(BAD_ASSERTION) from exc
        _check_times(claims, now, skew=0)
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list):
            raise _refuse(BAD_ASSERTION)
        match = next((f for f in trusted if f.audience in audiences), None)
        if match is None:
            raise _refuse(BAD_ASSERTION)
        if not client.active:
            raise _refuse(INACTIVE_CLIENT)
        return Authenticated(client, self.name, (FEDERATED, match.id))


def assertion_methods(
    *, issuer: str, token_endpoint: str, replay: ReplayStore, issuer_keys: IssuerKeys
) -> dict[str, ClientAuthMethod]:
    """The two assertion methods, for the pipeline's registry."""
    return {
        PRIVATE_KEY_JWT: PrivateKeyJwt(audiences=[token_endpoint, issuer], replay=replay),
        FEDERATED_JWT: FederatedJwt(issuer_keys=issuer_keys),
    }
