"""The Centrali Python client: client-credentials tokens, cached and refreshed, and the
workspace API. Depends on httpx only; importing it loads no server code.

    client = CentraliClient("ci_…", "sk_…", "acme-corp", base_url="http://127.0.0.1:8000")
    structures = client.make_request("GET", "/structures").json()

Token requests are retried with exponential backoff and full jitter on connection errors,
429 and 5xx (honouring ``Retry-After``), at most ``max_attempts`` times, never on a 4xx such
as ``invalid_client``. An API call answered 401 fetches a new token once and is retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "AsyncCentraliClient",
    "AsyncTokenProvider",
    "CentraliAPIError",
    "CentraliAuth",
    "CentraliAuthError",
    "CentraliClient",
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


# --- token fetching, shared by the sync and async providers -------------------------------


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic() after which it is replaced


@dataclass(frozen=True)
class _Retry:
    delay: float


def _token_form(client_id: str, client_secret: str, scope: str | None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
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


class _ProviderConfig:
    def __init__(
        self,
        client_id: str,
        client_secret: str,
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
        self._client_secret = client_secret
        self.token_url = token_url
        self.scope = scope
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.refresh_margin = refresh_margin
        self._token: _Token | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"{type(self).__name__}(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def _form(self) -> dict[str, str]:
        return _token_form(self.client_id, self._client_secret, self.scope)

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
    """Thread-safe cache of one client's access token; fetches at most one at a time."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_url: str,
        *,
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
            client_secret,
            token_url,
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
        client_secret: str,
        token_url: str,
        *,
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
            client_secret,
            token_url,
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
    """httpx authentication with Centrali client credentials, for any httpx client:

        auth = CentraliAuth("ci_…", "sk_…", token_url="http://127.0.0.1:8000/oidc/token")
        httpx.get(url, auth=auth)

    Adds the bearer token; on a 401 it fetches a new token once and resends.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_url: str,
        *,
        scope: str | None = "openid",
        provider: TokenProvider | None = None,
        async_provider: AsyncTokenProvider | None = None,
    ) -> None:
        self._args = (client_id, client_secret, token_url)
        self._scope = scope
        self._provider = provider
        self._async_provider = async_provider

    @property
    def provider(self) -> TokenProvider:
        if self._provider is None:
            self._provider = TokenProvider(*self._args, scope=self._scope)
        return self._provider

    @property
    def async_provider(self) -> AsyncTokenProvider:
        if self._async_provider is None:
            self._async_provider = AsyncTokenProvider(*self._args, scope=self._scope)
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
    for structures and records. Safe to share between threads."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        workspace_slug: str,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str | None = None,
        *,
        http_client: httpx.Client | None = None,
        scope: str | None = "openid",
        timeout: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.client_id = client_id
        self.workspace_slug = workspace_slug
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url or f"{self.base_url}/oidc/token"
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._tokens = TokenProvider(
            client_id,
            client_secret,
            self.token_url,
            http_client=self._http,
            scope=scope,
            max_attempts=max_attempts,
            refresh_margin=refresh_margin,
        )

    def __repr__(self) -> str:
        return f"CentraliClient(client_id={self.client_id!r}, workspace={self.workspace_slug!r})"

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
        client_secret: str,
        workspace_slug: str,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        scope: str | None = "openid",
        timeout: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.client_id = client_id
        self.workspace_slug = workspace_slug
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url or f"{self.base_url}/oidc/token"
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._tokens = AsyncTokenProvider(
            client_id,
            client_secret,
            self.token_url,
            http_client=self._http,
            scope=scope,
            max_attempts=max_attempts,
            refresh_margin=refresh_margin,
        )

    def __repr__(self) -> str:
        return (
            f"AsyncCentraliClient(client_id={self.client_id!r}, workspace={self.workspace_slug!r})"
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
