"""The Centrali Python client: client-credentials tokens, cached and refreshed, and the
workspace API. Importing it loads httpx only (no server code); PyJWT and cryptography are
loaded when a private key is first used.

    client = CentraliClient("ci_…", "sk_…", "acme-corp", base_url="http://127.0.0.1:8000")
    structures = client.make_request("GET", "/structures").json()

The client authenticates with one of three credentials: a secret (``client_secret``, as in
the guide), a private key (``private_key=``: ``private_key_jwt``, a fresh signed assertion for
every token request) or a workload's OIDC token (``federated_token_file=``, reread for every
token request). Secrets, keys, assertions and federated tokens never appear in a repr, an
error message or a log line.

Token requests are retried with exponential backoff and full jitter on connection errors,
429 and 5xx (honouring ``Retry-After``), at most ``max_attempts`` times, never on a 4xx such
as ``invalid_client``. An API call answered 401 fetches a new token once and is retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    _SigningKey: TypeAlias = RSAPrivateKey | EllipticCurvePrivateKey | Ed25519PrivateKey

__all__ = [
    "AsyncCentraliClient",
    "AsyncTokenProvider",
    "CentraliAPIError",
    "CentraliAuth",
    "CentraliAuthError",
    "CentraliClient",
    "CentraliCredentialError",
    "CentraliError",
    "TokenProvider",
]

DEFAULT_BASE_URL = "https://centrali.localhost"
REFRESH_MARGIN = 300  # seconds before expiry a cached token is replaced (the guide's 5 min)
MAX_ATTEMPTS = 5
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0


class CentraliError(Exception):
    """Base of every error this client raises."""


class CentraliAuthError(CentraliError):
    """The token endpoint refused: ``error`` and ``description`` as RFC 6749 §5.2 gives them."""

    def __init__(self, error: str, description: str | None = None, status_code: int | None = None):
        self.error = error
        self.description = description
        self.status_code = status_code
        super().__init__(f"{error}: {description}" if description else error)


class CentraliCredentialError(CentraliError):
    """The client's credential cannot be used: refused at construction (no credential or two,
    a public key, an unsupported or weak key), or a federated token file that cannot be read
    at a token request (``path`` names it). The message never holds any key or token."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class CentraliAPIError(CentraliError):
    """The workspace API answered with an error status."""

    def __init__(self, status_code: int, error: str, message: str):
        self.status_code = status_code
        self.error = error
        self.message = message
        super().__init__(f"{status_code} {error}: {message}")

    @classmethod
    def from_response(cls, response: httpx.Response) -> CentraliAPIError:
        error, message = "http_error", response.reason_phrase or "error"
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = str(body.get("error", error))
            message = str(body.get("message", body.get("error_description", message)))
        return cls(response.status_code, error, message)


# --- credentials: a secret, a private key or a federated workload token -------------------

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds; the server accepts at most 600
MIN_RSA_BITS = 2048
# The algorithms each key type may sign with, the default first.
_RSA_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256")


class _Credential:
    """What proves the client's identity at the token endpoint. Subclasses keep their
    material out of ``repr`` and out of every error message."""

    method = ""  # the token_endpoint_auth_method, shown by repr

    def client_auth(self, client_id: str, token_url: str) -> dict[str, str]:
        """The form parameters authenticating one token request (fresh for every call)."""
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments that make this credential again (a loaded key as the
        key object, so a PEM is parsed once)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.method} credential>"


class _SecretCredential(_Credential):
    method = "client_secret_post"

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def arguments(self) -> dict[str, Any]:
        return {"client_secret": self._secret}

    def client_auth(self, client_id: str, token_url: str) -> dict[str, str]:
        return {"client_secret": self._secret}


class _KeyCredential(_Credential):
    """``private_key_jwt`` (RFC 7523 §2.2): a new signed assertion for every token request."""

    method = "private_key_jwt"

    def __init__(self, key: _SigningKey, algorithm: str, key_id: str | None) -> None:
        self._key = key
        self.algorithm = algorithm
        self.key_id = key_id

    def arguments(self) -> dict[str, Any]:
        return {"private_key": self._key, "key_id": self.key_id, "algorithm": self.algorithm}

    def client_auth(self, client_id: str, token_url: str) -> dict[str, str]:
        import jwt  # here, not at the top: ``import centrali`` stays light

        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self.key_id} if self.key_id else None
        try:
            assertion = jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)
        except Exception as exc:  # never chained: nothing of the key may leak into a report
            raise CentraliCredentialError(
                f"signing the client assertion with {self.algorithm} failed ({type(exc).__name__})"
            ) from None
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


class _FederatedCredential(_Credential):
    """A workload's own OIDC token, reread from its file for every token request (projected
    Kubernetes tokens are rotated on disk) and passed through unchanged."""

    method = "federated"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"<federated credential from {self.path!r}>"

    def arguments(self) -> dict[str, Any]:
        return {"federated_token_file": self.path}

    def client_auth(self, client_id: str, token_url: str) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self._read()}

    def _read(self) -> str:
        path = self.path
        try:
            with open(path, encoding="utf-8") as file:
                token = file.read().strip()
        except FileNotFoundError:
            reason = "does not exist"
        except IsADirectoryError:
            reason = "is a directory"
        except PermissionError:
            reason = "cannot be read: permission denied"
        except UnicodeDecodeError:
            reason = "is not UTF-8 text"
        except OSError as exc:
            reason = f"cannot be read: {exc.strerror or type(exc).__name__}"
        else:
            if token:
                return token
            reason = "is empty"
        raise CentraliCredentialError(f"federated token file {path!r} {reason}", path=path)


def _credential(
    client_secret: str | None,
    private_key: str | bytes | PrivateKeyTypes | None,
    key_id: str | None,
    algorithm: str | None,
    federated_token_file: str | os.PathLike[str] | None,
) -> _Credential:
    """Exactly one of the three credentials, checked: CentraliCredentialError otherwise."""
    given = [
        name
        for name, value in (
            ("client_secret", client_secret),
            ("private_key", private_key),
            ("federated_token_file", federated_token_file),
        )
        if value is not None
    ]
    if not given:
        raise CentraliCredentialError(
            "no credential: pass client_secret, private_key or federated_token_file"
        )
    if len(given) > 1:
        raise CentraliCredentialError(f"pass one credential only, not {' and '.join(given)}")
    if private_key is None and (key_id is not None or algorithm is not None):
        raise CentraliCredentialError("key_id and algorithm go with private_key only")
    if client_secret is not None:
        if not isinstance(client_secret, str) or not client_secret:
            raise CentraliCredentialError("client_secret must be a non-empty string")
        return _SecretCredential(client_secret)
    if private_key is not None:
        if key_id is not None and (not isinstance(key_id, str) or not key_id):
            raise CentraliCredentialError("key_id must be a non-empty string")
        key, algorithm = _signing_key(_load_private_key(private_key), algorithm)
        return _KeyCredential(key, algorithm, key_id)
    assert federated_token_file is not None
    if not isinstance(federated_token_file, str | os.PathLike) or not os.fspath(
        federated_token_file
    ):
        raise CentraliCredentialError("federated_token_file must be a path")
    return _FederatedCredential(federated_token_file)


def _load_private_key(private_key: str | bytes | PrivateKeyTypes) -> PrivateKeyTypes:
    """A key object from a PEM (str or bytes) or the object itself. Errors never carry the
    PEM, and never chain the parser's exception."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if not isinstance(private_key, str | bytes):
        return private_key
    data = private_key.encode() if isinstance(private_key, str) else private_key
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: a password-protected key and no password
        problem = "private_key is encrypted; pass it decrypted or as a key object"
    except (ValueError, UnsupportedAlgorithm):
        try:
            serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            problem = "private_key is not a PEM-encoded private key"
        else:
            problem = "private_key is a public key; the client needs the private key"
    raise CentraliCredentialError(problem)


def _signing_key(key: object, algorithm: str | None) -> tuple[_SigningKey, str]:
    """``key`` and its JWS algorithm: RS256 (or PS256) for RSA of at least 2048 bits, ES256 for
    P-256, EdDSA for Ed25519; anything else is refused."""
    from cryptography.hazmat.primitives.asymmetric import (
        ec,
        ed448,
        ed25519,
        rsa,
        x448,
        x25519,
    )

    public = (
        rsa.RSAPublicKey,
        ec.EllipticCurvePublicKey,
        ed25519.Ed25519PublicKey,
        ed448.Ed448PublicKey,
        x25519.X25519PublicKey,
        x448.X448PublicKey,
    )
    if isinstance(key, public):
        raise CentraliCredentialError(
            "private_key is a public key; the client needs the private key"
        )
    signing_key: _SigningKey
    allowed: tuple[str, ...]
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise CentraliCredentialError(
                f"RSA key of {key.key_size} bits is too weak: at least {MIN_RSA_BITS} needed"
            )
        signing_key, allowed = key, _RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise CentraliCredentialError(
                f"unsupported elliptic curve {key.curve.name}: only P-256 (ES256)"
            )
        signing_key, allowed = key, ("ES256",)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signing_key, allowed = key, ("EdDSA",)
    else:
        raise CentraliCredentialError(
            f"unsupported key type {type(key).__name__}: "
            "use RSA (at least 2048 bits), EC P-256 or Ed25519"
        )
    if algorithm is None:
        return signing_key, allowed[0]
    if algorithm not in allowed:
        raise CentraliCredentialError(
            f"algorithm {algorithm!r} does not fit this key: {' or '.join(allowed)}"
        )
    return signing_key, algorithm


# --- token fetching, shared by the sync and async providers -------------------------------


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic() after which it is replaced


@dataclass(frozen=True)
class _Retry:
    delay: float


def _token_form(
    client_id: str, credential: _Credential, token_url: str, scope: str | None
) -> dict[str, str]:
    """The client-credentials form of one token request, whatever the credential."""
    form = {"grant_type": "client_credentials", "client_id": client_id}
    form.update(credential.client_auth(client_id, token_url))
    if scope:
        form["scope"] = scope
    return form


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), RETRY_AFTER_CAP))


def _read_token_response(
    response: httpx.Response, attempt: int, base: float, cap: float, margin: float
) -> _Token | _Retry:
    """A token, a retry after some delay, or CentraliAuthError."""
    status = response.status_code
    if status == 429 or status >= 500:
        after = _retry_after(response)
        return _Retry(after if after is not None else _backoff(attempt, base, cap))
    try:
        body = response.json()
    except ValueError:
        body = None
    if status != 200:
        if isinstance(body, dict) and "error" in body:
            raise CentraliAuthError(str(body["error"]), body.get("error_description"), status)
        raise CentraliAuthError("invalid_response", f"token endpoint answered {status}", status)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise CentraliAuthError("invalid_response", "no access_token in the answer", status)
    expires_in = body.get("expires_in", 25200)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        expires_in = 25200
    # Short-lived tokens are refreshed at half-life rather than never cached.
    lead = min(margin, expires_in / 2)
    return _Token(body["access_token"], time.monotonic() + expires_in - lead)


def _required(value: str | None, name: str, owner: str) -> str:
    if not value:
        raise TypeError(f"{owner}() missing required argument: {name!r}")
    return value


class _ProviderConfig:
    def __init__(
        self,
        client_id: str,
        credential: _Credential,
        token_url: str,
        *,
        scope: str | None,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
        refresh_margin: float,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.client_id = client_id
        self._credential = credential
        self.token_url = token_url
        self.scope = scope
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.refresh_margin = refresh_margin
        self._token: _Token | None = None

    @property
    def auth_method(self) -> str:
        """``client_secret_post``, ``private_key_jwt`` or ``federated``."""
        return self._credential.method

    def __repr__(self) -> str:  # never the secret, the key or a token
        return (
            f"{type(self).__name__}(client_id={self.client_id!r}, "
            f"auth={self.auth_method!r}, token_url={self.token_url!r})"
        )

    def _form(self) -> dict[str, str]:
        """Built again for every attempt: an assertion is single-use, a token file rotates."""
        return _token_form(self.client_id, self._credential, self.token_url, self.scope)

    def _cached(self) -> str | None:
        token = self._token
        if token is not None and time.monotonic() < token.refresh_at:
            return token.value
        return None

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is ``token``, when given)."""
        if token is None or (self._token is not None and self._token.value == token):
            self._token = None


class TokenProvider(_ProviderConfig):
    """Thread-safe cache of one client's access token; fetches at most one at a time.
    One credential: ``client_secret``, ``private_key`` (with ``key_id``, ``algorithm``) or
    ``federated_token_file``, as for CentraliClient."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        token_url: str | None = None,
        *,
        private_key: str | bytes | PrivateKeyTypes | None = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        federated_token_file: str | os.PathLike[str] | None = None,
        http_client: httpx.Client | None = None,
        scope: str | None = "openid",
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        refresh_margin: float = REFRESH_MARGIN,
        sleep: Any = None,
    ) -> None:
        super().__init__(
            client_id,
            _credential(client_secret, private_key, key_id, algorithm, federated_token_file),
            _required(token_url, "token_url", "TokenProvider"),
            scope=scope,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            refresh_margin=refresh_margin,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=10.0)
        self._lock = threading.Lock()
        self._sleep = sleep or (lambda seconds: time.sleep(seconds))

    def get_token(self) -> str:
        token = self._cached()
        if token is not None:
            return token
        with self._lock:
            token = self._cached()  # another thread may have fetched it meanwhile
            if token is None:
                fetched = self._fetch()
                self._token = fetched
                token = fetched.value
            return token

    def _fetch(self) -> _Token:
        last_error: Exception | None = None
        for attempt in range(self.max_attempts):
            try:
                response = self._http.post(
                    self.token_url,
                    data=self._form(),
                    headers={"Accept": "application/json"},
                )
            except httpx.TransportError as exc:
                last_error = exc
                outcome: _Token | _Retry = _Retry(
                    _backoff(attempt, self.backoff_base, self.backoff_cap)
                )
            else:
                outcome = _read_token_response(
                    response, attempt, self.backoff_base, self.backoff_cap, self.refresh_margin
                )
                last_error = CentraliAuthError(
                    "temporarily_unavailable",
                    f"token endpoint answered {response.status_code}",
                    response.status_code,
                )
            if isinstance(outcome, _Token):
                return outcome
            if attempt + 1 < self.max_attempts:
                self._sleep(outcome.delay)
        if isinstance(last_error, CentraliError):
            raise last_error
        raise CentraliAuthError("connection_error", str(last_error)) from last_error

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


class AsyncTokenProvider(_ProviderConfig):
    """The asyncio twin of TokenProvider: concurrent callers share one fetch."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        token_url: str | None = None,
        *,
        private_key: str | bytes | PrivateKeyTypes | None = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        federated_token_file: str | os.PathLike[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        scope: str | None = "openid",
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        refresh_margin: float = REFRESH_MARGIN,
        sleep: Any = None,
    ) -> None:
        super().__init__(
            client_id,
            _credential(client_secret, private_key, key_id, algorithm, federated_token_file),
            _required(token_url, "token_url", "AsyncTokenProvider"),
            scope=scope,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            refresh_margin=refresh_margin,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=10.0)
        self._lock: asyncio.Lock | None = None
        self._sleep = sleep or (lambda seconds: asyncio.sleep(seconds))

    async def get_token(self) -> str:
        token = self._cached()
        if token is not None:
            return token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = self._cached()
            if token is None:
                fetched = await self._fetch()
                self._token = fetched
                token = fetched.value
            return token

    async def _fetch(self) -> _Token:
        last_error: Exception | None = None
        for attempt in range(self.max_attempts):
            try:
                response = await self._http.post(
                    self.token_url,
                    data=self._form(),
                    headers={"Accept": "application/json"},
                )
            except httpx.TransportError as exc:
                last_error = exc
                outcome: _Token | _Retry = _Retry(
                    _backoff(attempt, self.backoff_base, self.backoff_cap)
                )
            else:
                outcome = _read_token_response(
                    response, attempt, self.backoff_base, self.backoff_cap, self.refresh_margin
                )
                last_error = CentraliAuthError(
                    "temporarily_unavailable",
                    f"token endpoint answered {response.status_code}",
                    response.status_code,
                )
            if isinstance(outcome, _Token):
                return outcome
            if attempt + 1 < self.max_attempts:
                await self._sleep(outcome.delay)
        if isinstance(last_error, CentraliError):
            raise last_error
        raise CentraliAuthError("connection_error", str(last_error)) from last_error

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


class CentraliAuth(httpx.Auth):
    """httpx authentication with Centrali client credentials, for any httpx client, sync or
    async:

        auth = CentraliAuth("ci_…", "sk_…", token_url="http://127.0.0.1:8000/oidc/token")
        auth = CentraliAuth("ci_…", token_url=…, private_key=pem, key_id="k1")
        auth = CentraliAuth("ci_…", token_url=…, federated_token_file="/var/run/token")
        httpx.get(url, auth=auth)

    Adds the bearer token; on a 401 it fetches a new token once and resends.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        token_url: str | None = None,
        *,
        private_key: str | bytes | PrivateKeyTypes | None = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        federated_token_file: str | os.PathLike[str] | None = None,
        scope: str | None = "openid",
        provider: TokenProvider | None = None,
        async_provider: AsyncTokenProvider | None = None,
    ) -> None:
        self.client_id = client_id
        self.token_url = _required(token_url, "token_url", "CentraliAuth")
        # Checked now (a bad key fails here, not at the first request); the providers are
        # made on first use, each from the checked credential.
        self._credential = _credential(
            client_secret, private_key, key_id, algorithm, federated_token_file
        )
        self._scope = scope
        self._provider = provider
        self._async_provider = async_provider

    def __repr__(self) -> str:
        return (
            f"CentraliAuth(client_id={self.client_id!r}, auth={self._credential.method!r}, "
            f"token_url={self.token_url!r})"
        )

    def _arguments(self) -> dict[str, Any]:
        return self._credential.arguments()

    @property
    def provider(self) -> TokenProvider:
        if self._provider is None:
            self._provider = TokenProvider(
                self.client_id, token_url=self.token_url, scope=self._scope, **self._arguments()
            )
        return self._provider

    @property
    def async_provider(self) -> AsyncTokenProvider:
        if self._async_provider is None:
            self._async_provider = AsyncTokenProvider(
                self.client_id, token_url=self.token_url, scope=self._scope, **self._arguments()
            )
        return self._async_provider

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        token = self.provider.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.provider.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self.provider.get_token()}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.async_provider.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.async_provider.invalidate(token)
            request.headers["Authorization"] = f"Bearer {await self.async_provider.get_token()}"
            yield request


def _api_url(base_url: str, workspace_slug: str, endpoint: str) -> str:
    if not endpoint.startswith("/"):
        endpoint = "/" + endpoint
    return f"{base_url.rstrip('/')}/workspace/{workspace_slug}/api/v1{endpoint}"


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise CentraliAPIError.from_response(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


class CentraliClient:
    """The guide's client: ``get_access_token()`` and ``make_request()``, plus conveniences
    for structures and records. Safe to share between threads.

    One credential, of three kinds::

        CentraliClient("ci_…", "sk_…", "acme-corp", base_url=…)  # the guide's secret
        CentraliClient("ci_…", workspace_slug="acme-corp", private_key=pem, key_id="k1")
        CentraliClient("ci_…", workspace_slug="acme-corp", federated_token_file=path)

    ``private_key`` (PEM str or bytes, or a cryptography private key object: RSA of at least
    2048 bits signs RS256, or PS256 with ``algorithm="PS256"``; EC P-256 ES256; Ed25519 EdDSA)
    signs a fresh assertion for every token request, ``aud`` = the token URL, header ``kid`` =
    ``key_id`` when given. ``federated_token_file`` is reread for every token request; a file
    that is missing, empty or unreadable raises CentraliCredentialError naming the path. A
    credential that cannot work (none, two, a public key, a weak or unsupported key) raises
    CentraliCredentialError here, at construction.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        workspace_slug: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str | None = None,
        *,
        private_key: str | bytes | PrivateKeyTypes | None = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        federated_token_file: str | os.PathLike[str] | None = None,
        http_client: httpx.Client | None = None,
        scope: str | None = "openid",
        timeout: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.client_id = client_id
        self.workspace_slug = _required(workspace_slug, "workspace_slug", "CentraliClient")
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url or f"{self.base_url}/oidc/token"
        # The credential is checked before an HTTP client is made (nothing to close on error).
        credential = _credential(
            client_secret, private_key, key_id, algorithm, federated_token_file
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._tokens = TokenProvider(
            client_id,
            token_url=self.token_url,
            **credential.arguments(),
            http_client=self._http,
            scope=scope,
            max_attempts=max_attempts,
            refresh_margin=refresh_margin,
        )

    @property
    def auth_method(self) -> str:
        """``client_secret_post``, ``private_key_jwt`` or ``federated``."""
        return self._tokens.auth_method

    def __repr__(self) -> str:  # never the secret, the key or a token
        return (
            f"CentraliClient(client_id={self.client_id!r}, workspace={self.workspace_slug!r}, "
            f"auth={self.auth_method!r})"
        )

    def __enter__(self) -> CentraliClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def get_access_token(self) -> str:
        """A valid access token, cached until 5 minutes before it expires."""
        return self._tokens.get_token()

    def make_request(self, method: str, endpoint: str, **kwargs: Any) -> httpx.Response:
        """An authenticated call to ``/workspace/{slug}/api/v1{endpoint}``; a 401 answer
        fetches a new token once and retries."""
        url = _api_url(self.base_url, self.workspace_slug, endpoint)
        headers = dict(kwargs.pop("headers", None) or {})
        token = self.get_access_token()
        headers["Authorization"] = f"Bearer {token}"
        response = self._http.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401:
            self._tokens.invalidate(token)
            headers["Authorization"] = f"Bearer {self.get_access_token()}"
            response = self._http.request(method, url, headers=headers, **kwargs)
        return response

    # conveniences: answers as dicts, errors as CentraliAPIError
    def list_structures(self, page: int = 1, limit: int = 20) -> Any:
        return _checked(self.make_request("GET", "/structures", params=_page(page, limit)))

    def get_structure(self, slug: str) -> Any:
        return _checked(self.make_request("GET", f"/structures/{slug}"))

    def create_structure(
        self, slug: str, name: str, fields: list[Mapping[str, Any]], description: str | None = None
    ) -> Any:
        body = {"slug": slug, "name": name, "fields": list(fields)}
        if description is not None:
            body["description"] = description
        return _checked(self.make_request("POST", "/structures", json=body))

    def delete_structure(self, slug: str, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        _checked(self.make_request("DELETE", f"/structures/{slug}", params=params))

    def create_record(self, record_slug: str, data: Mapping[str, Any]) -> Any:
        body = {"recordSlug": record_slug, "data": dict(data)}
        return _checked(self.make_request("POST", "/records", json=body))

    def list_records(self, record_slug: str | None = None, page: int = 1, limit: int = 20) -> Any:
        params = _page(page, limit)
        if record_slug is not None:
            params["recordSlug"] = record_slug
        return _checked(self.make_request("GET", "/records", params=params))

    def get_record(self, record_id: int) -> Any:
        return _checked(self.make_request("GET", f"/records/{record_id}"))

    def update_record(self, record_id: int, data: Mapping[str, Any]) -> Any:
        return _checked(
            self.make_request("PUT", f"/records/{record_id}", json={"data": dict(data)})
        )

    def delete_record(self, record_id: int) -> None:
        _checked(self.make_request("DELETE", f"/records/{record_id}"))


def _page(page: int, limit: int) -> dict[str, Any]:
    return {"page": page, "limit": limit}


class AsyncCentraliClient:
    """The asyncio twin of CentraliClient."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        workspace_slug: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str | None = None,
        *,
        private_key: str | bytes | PrivateKeyTypes | None = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        federated_token_file: str | os.PathLike[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        scope: str | None = "openid",
        timeout: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.client_id = client_id
        self.workspace_slug = _required(workspace_slug, "workspace_slug", "AsyncCentraliClient")
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url or f"{self.base_url}/oidc/token"
        # The credential is checked before an HTTP client is made (nothing to close on error).
        credential = _credential(
            client_secret, private_key, key_id, algorithm, federated_token_file
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._tokens = AsyncTokenProvider(
            client_id,
            token_url=self.token_url,
            **credential.arguments(),
            http_client=self._http,
            scope=scope,
            max_attempts=max_attempts,
            refresh_margin=refresh_margin,
        )

    @property
    def auth_method(self) -> str:
        """``client_secret_post``, ``private_key_jwt`` or ``federated``."""
        return self._tokens.auth_method

    def __repr__(self) -> str:  # never the secret, the key or a token
        return (
            f"AsyncCentraliClient(client_id={self.client_id!r}, "
            f"workspace={self.workspace_slug!r}, auth={self.auth_method!r})"
        )

    async def __aenter__(self) -> AsyncCentraliClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def get_access_token(self) -> str:
        return await self._tokens.get_token()

    async def make_request(self, method: str, endpoint: str, **kwargs: Any) -> httpx.Response:
        url = _api_url(self.base_url, self.workspace_slug, endpoint)
        headers = dict(kwargs.pop("headers", None) or {})
        token = await self.get_access_token()
        headers["Authorization"] = f"Bearer {token}"
        response = await self._http.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401:
            self._tokens.invalidate(token)
            headers["Authorization"] = f"Bearer {await self.get_access_token()}"
            response = await self._http.request(method, url, headers=headers, **kwargs)
        return response

    async def list_structures(self, page: int = 1, limit: int = 20) -> Any:
        return _checked(await self.make_request("GET", "/structures", params=_page(page, limit)))

    async def get_structure(self, slug: str) -> Any:
        return _checked(await self.make_request("GET", f"/structures/{slug}"))

    async def create_record(self, record_slug: str, data: Mapping[str, Any]) -> Any:
        body = {"recordSlug": record_slug, "data": dict(data)}
        return _checked(await self.make_request("POST", "/records", json=body))

    async def list_records(
        self, record_slug: str | None = None, page: int = 1, limit: int = 20
    ) -> Any:
        params = _page(page, limit)
        if record_slug is not None:
            params["recordSlug"] = record_slug
        return _checked(await self.make_request("GET", "/records", params=params))

    async def get_record(self, record_id: int) -> Any:
        return _checked(await self.make_request("GET", f"/records/{record_id}"))

    async def delete_record(self, record_id: int) -> None:
        _checked(await self.make_request("DELETE", f"/records/{record_id}"))
