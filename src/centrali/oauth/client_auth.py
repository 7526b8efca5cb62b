"""Client authentication (RFC 6749 §2.3, §3.2.1): the one pipeline every endpoint that
authenticates a client runs (token, introspection, revocation), in this order:

    extract the credentials (one method per request)
    → limits: look (a source already held back is refused before any lookup)
    → look up the client (confidential: batched with the other lookups of the moment)
    → verify with the method the request used (a registry: ``METHODS``)
    → limits: conclude (one atomic step: refuse while a budget is spent, else charge a
      failure or take the issuance token)
    → record the failure (counts per client and reason) or the credential's use
    → the endpoint's own work (``then``), and the issuance token given back if it fails.

Methods: ``client_secret_basic`` and ``client_secret_post`` check a secret against every
live secret of the account (constant work, ``credentials.match_secret``); ``none`` is a
registered public client naming itself (§2.1; only for the grants that allow it: the user
grants and revoking its own refresh tokens). A new method (``private_key_jwt``, a federated
assertion) is one class with ``verify`` and one line in ``METHODS``.

Every failure of a confidential client is the same 401 ``invalid_client`` after the same
work; ``InvalidClientError.detail`` carries a short reason label for the counts and metrics
(``REASONS``), never sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar
from urllib.parse import unquote_plus

import jwt

from centrali.oauth.credentials import match_secret
from centrali.oauth.errors import InvalidClientError, InvalidRequestError, OAuthError
from centrali.oauth.limits import Admission, SlowDownError, TokenLimiter
from centrali.oauth.ports import SECRET, ClientRecord, ClientStore, CredentialUsage, FailureLog
from centrali.oauth.user_ports import PublicClient, PublicClientLookup

T = TypeVar("T")

BASIC = "client_secret_basic"
POST = "client_secret_post"
NONE = "none"
# RFC 7523 §2.2 assertions (client_assertion_type=JWT_BEARER): signed by one of the client's
# keys (iss = sub = client_id), or issued about a workload by an issuer the client trusts.
PRIVATE_KEY_JWT = "private_key_jwt"
FEDERATED_JWT = "federated_jwt"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_METHODS = (BASIC, POST, PRIVATE_KEY_JWT)
# The token endpoint's: AUTH_METHODS for confidential clients, "none" for public ones.
TOKEN_AUTH_METHODS = (BASIC, POST, PRIVATE_KEY_JWT, NONE)

# Reason labels of a refused authentication (InvalidClientError.detail).
NO_CREDENTIALS = "no_credentials"
UNKNOWN_CLIENT = "unknown_client"
WRONG_SECRET = "wrong_secret"
INACTIVE_CLIENT = "inactive_client"
RATE_LIMITED = "rate_limited"
BAD_ASSERTION = "bad_assertion"  # malformed, wrong algorithm, iss/sub/aud/jti wrong
BAD_SIGNATURE = "bad_signature"
EXPIRED_ASSERTION = "expired_assertion"  # or too long-lived, or not yet valid
REPLAYED_ASSERTION = "replayed_assertion"
UNKNOWN_ISSUER = "unknown_issuer"  # no live federated credential matches iss and sub
ISSUER_UNAVAILABLE = "issuer_unavailable"
REASONS = frozenset(
    {
        NO_CREDENTIALS,
        UNKNOWN_CLIENT,
        WRONG_SECRET,
        INACTIVE_CLIENT,
        BAD_ASSERTION,
        BAD_SIGNATURE,
        EXPIRED_ASSERTION,
        REPLAYED_ASSERTION,
        UNKNOWN_ISSUER,
    }
)
# Refusals counted per client id in the store (the rest are the caller's own mistakes).
COUNTED = REASONS - {NO_CREDENTIALS} | {RATE_LIMITED}

_MAX_CREDENTIAL_LEN = 512
_LOOKUP_ID = re.compile(rf"[\x21-\x7e]{{1,{_MAX_CREDENTIAL_LEN}}}")


def is_lookup_id(client_id: str) -> bool:
    """Whether ``client_id`` may be looked up at all: printable ASCII, not too long (a NUL or
    a control character never reaches SQL)."""
    return _LOOKUP_ID.fullmatch(client_id) is not None


# --- extract ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    method: str
    # The client_assertion JWT (PRIVATE_KEY_JWT and FEDERATED_JWT).
    assertion: str | None = None


def extract_client_credentials(
    form: Mapping[str, str], authorization: str | None, *, allow_none: bool = False
) -> ClientCredentials:
    """Find the credentials in the Authorization header or the form, not both.

    ``allow_none``: a body ``client_id`` without any secret is a public client (method
    ``none``, empty secret) instead of ``invalid_client``."""
    basic = _parse_basic(authorization)
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
    if assertion_type is not None or assertion is not None:
        if basic is not None or body_secret is not None:
            raise InvalidRequestError("Client credentials given by more than one method")
        return _assertion_credentials(body_id, assertion_type, assertion)
    if basic is not None:
        # §2.3: one method per request; a body client_id may only repeat the Basic one.
        if body_secret is not None or (body_id is not None and body_id != basic[0]):
            raise InvalidRequestError("Client credentials given by more than one method")
        return ClientCredentials(basic[0], basic[1], BASIC)
    if allow_none and body_id is not None and body_secret is None:
        return ClientCredentials(body_id, "", NONE)
    if body_id is None or body_secret is None:
        raise InvalidClientError(detail=NO_CREDENTIALS)
    return ClientCredentials(body_id, body_secret, POST)


_MAX_ASSERTION_LEN = 16 * 1024


def _assertion_credentials(
    client_id: str | None, assertion_type: str | None, assertion: str | None
) -> ClientCredentials:
    """RFC 7523 §2.2 / RFC 7521 §4.2: the assertion names the client. Its own key's
    assertion has iss = sub = client_id (``client_id`` optional, and then equal to them);
    a workload's has the external issuer's iss and sub, and needs ``client_id``. Only the
    unverified claims are read here: the method verifies them."""
    if assertion_type != JWT_BEARER or not assertion:
        raise InvalidClientError(detail=BAD_ASSERTION)
    if len(assertion) > _MAX_ASSERTION_LEN or not assertion.isascii():
        raise InvalidClientError(detail=BAD_ASSERTION)
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidClientError(detail=BAD_ASSERTION) from exc
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str) or not iss or not sub:
        raise InvalidClientError(detail=BAD_ASSERTION)
    if iss == sub:
        if client_id is not None and client_id != sub:
            raise InvalidClientError(detail=BAD_ASSERTION)
        return ClientCredentials(sub, "", PRIVATE_KEY_JWT, assertion)
    if client_id is None:
        raise InvalidClientError(detail=BAD_ASSERTION)
    return ClientCredentials(client_id, "", FEDERATED_JWT, assertion)


def _parse_basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequestError("Malformed HTTP Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidRequestError("Malformed HTTP Basic credentials")
    # §2.3.1: id and secret are form-urlencoded before Basic encoding.
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not client_id or not secret:
        raise InvalidClientError(detail=NO_CREDENTIALS, basic=True)
    return client_id, secret


# --- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who the request proved to be, how, and with which stored credential."""

    client: ClientRecord | PublicClient
    method: str
    # The stored credential that proved it: (kind, id), kind SECRET, KEY or FEDERATED.
    credential: tuple[str, int] | None = None

    @property
    def confidential(self) -> ClientRecord:
        """The confidential client (InvalidClientError for a public one)."""
        if not isinstance(self.client, ClientRecord):
            raise InvalidClientError(detail=UNKNOWN_CLIENT)
        return self.client


class ClientAuthMethod(Protocol):
    name: ClassVar[str]

    async def verify(
        self, credentials: ClientCredentials, client: ClientRecord | None, now: float
    ) -> Authenticated:
        """The authenticated client, or InvalidClientError (detail: a reason label) after
        the same work whether or not ``client`` exists."""
        ...


class _SecretMethod:
    """client_secret_basic / client_secret_post: one of the account's live secrets."""

    name: ClassVar[str] = POST
    basic: ClassVar[bool] = False

    async def verify(
        self, credentials: ClientCredentials, client: ClientRecord | None, now: float
    ) -> Authenticated:
        given = credentials.client_secret
        found = match_secret(
            given[:_MAX_CREDENTIAL_LEN], client.secrets if client is not None else (), now
        )
        if client is None:
            raise InvalidClientError(detail=UNKNOWN_CLIENT, basic=self.basic)
        if found is None or len(given) > _MAX_CREDENTIAL_LEN:
            raise InvalidClientError(detail=WRONG_SECRET, basic=self.basic)
        if not client.active:
            raise InvalidClientError(detail=INACTIVE_CLIENT, basic=self.basic)
        return Authenticated(client, self.name, (SECRET, found.id))


class ClientSecretPost(_SecretMethod):
    name = POST


class ClientSecretBasic(_SecretMethod):
    name = BASIC
    basic = True


METHODS: dict[str, ClientAuthMethod] = {
    BASIC: ClientSecretBasic(),
    POST: ClientSecretPost(),
}


# --- the pipeline ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientAuthRequest:
    """What the HTTP layer read: the form, the Authorization header, the source address."""

    form: Mapping[str, str]
    authorization: str | None
    ip: str
    # Whether a public client may name itself (``none``).
    allow_none: bool = False
    # Whether a success goes on to issue a token (the token endpoint): only then does it
    # take from the client's issuance budget (introspection and revocation issue nothing).
    issues: bool = True


@dataclass
class ClientAuthenticator:
    """The pipeline over its ports; one per process (see the module docstring)."""

    clients: ClientStore
    public_clients: PublicClientLookup | None = None
    limiter: TokenLimiter | None = None
    failures: FailureLog | None = None
    usage: CredentialUsage | None = None
    methods: Mapping[str, ClientAuthMethod] = field(default_factory=lambda: METHODS)

    async def authenticate(
        self,
        request: ClientAuthRequest,
        now: float,
        then: Callable[[Authenticated], Awaitable[T]],
    ) -> T:
        """Authenticate the client, then run ``then`` (the endpoint's work) with it; raise
        the first OAuthError of either."""
        try:
            credentials = extract_client_credentials(
                request.form, request.authorization, allow_none=request.allow_none
            )
        except InvalidClientError as exc:
            # No credentials at all: a failed authentication of this address, refused with
            # 429 like any other while the address is held back.
            await self._conclude(request.ip, None, False, now, public=False)
            self._count("", exc)
            raise
        client_id = credentials.client_id
        # The limiter's "public": no issuance budget (a public client's would be shared by
        # every user of it; a call that issues nothing has nothing to spend).
        public = credentials.method == NONE or not request.issues
        limiter = self.limiter
        try:
            if limiter is not None:
                await limiter.check(request.ip, client_id, now, public=public)
            refusal: InvalidClientError | None = None
            try:
                authenticated = await self._verify(credentials, now)
            except InvalidClientError as exc:
                refusal = exc
            admission = await self._conclude(
                request.ip, client_id, refusal is None, now, public=public
            )
        except SlowDownError:
            self._count(client_id, None)
            raise
        if refusal is not None:
            self._count(client_id, refusal)
            raise refusal
        if self.usage is not None and authenticated.credential is not None:
            self.usage.record(client_id, *authenticated.credential, now)
        try:
            return await then(authenticated)
        except BaseException:
            if limiter is not None and admission.issuance:
                await limiter.refund(admission, now)
            raise

    async def _verify(self, credentials: ClientCredentials, now: float) -> Authenticated:
        client_id = credentials.client_id
        if credentials.method == NONE:
            public = None
            if self.public_clients is not None and is_lookup_id(client_id):
                public = await self.public_clients.find_public_client(client_id)
            if public is None:
                raise InvalidClientError(detail=UNKNOWN_CLIENT)
            return Authenticated(public, NONE)
        method = self.methods.get(credentials.method)
        if method is None:  # a method this endpoint does not offer
            raise InvalidClientError(detail=NO_CREDENTIALS)
        record = await self.clients.find_client(client_id) if is_lookup_id(client_id) else None
        return await method.verify(credentials, record, now)

    async def _conclude(
        self, ip: str, client_id: str | None, authenticated: bool, now: float, *, public: bool
    ) -> Admission:
        if self.limiter is None:
            return Admission()
        return await self.limiter.conclude(ip, client_id, authenticated, now, public=public)

    def _count(self, client_id: str, refusal: OAuthError | None) -> None:
        reason = RATE_LIMITED if refusal is None else (refusal.detail or NO_CREDENTIALS)
        if self.failures is not None and reason in COUNTED:
            self.failures.record(client_id, reason)
