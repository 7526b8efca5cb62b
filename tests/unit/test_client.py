"""The Python client (contract: "Python client"; issue 3, part 4) against httpx's
MockTransport: token cache and refresh margin, one fetch under 50 threads, backoff with
Retry-After, no retry of ``invalid_client``, the single 401 retry, typed errors, the
``httpx.Auth`` class, the asyncio twin, and a light ``import centrali``.

No server and no real sleeps: waits go to a recording fake, jitter is pinned.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

import centrali
from centrali.client import (
    AsyncCentraliClient,
    AsyncTokenProvider,
    CentraliAPIError,
    CentraliAuth,
    CentraliAuthError,
    CentraliClient,
    CentraliCredentialError,
    CentraliError,
    TokenProvider,
)

CLIENT_ID = "ci_a1b2c3d4e5f6g7h8i9j0"
CLIENT_SECRET = "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
WS = "acme-corp"
BASE_URL = "https://api.centrali.test"
TOKEN_URL = "https://auth.centrali.test/oidc/token"
API_PREFIX = f"{BASE_URL}/workspace/{WS}/api/v1"
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client credentials"}


# --- a fake token endpoint and API ---------------------------------------------------------


class Backend:
    """A token endpoint and a workspace API behind one MockTransport handler.

    Token answers come from ``token_script`` in order (the last one repeats); an entry is a
    Response or an exception to raise. Each issued token is ``tok-N``. API answers come from
    ``api_script`` the same way, 200 ``{"data": []}`` when empty.
    """

    def __init__(self, *, token_delay: float = 0.0, expires_in: int = 25200) -> None:
        self.token_delay = token_delay
        self.expires_in = expires_in
        self.token_script: Sequence[httpx.Response | Exception] = []
        self.api_script: Sequence[httpx.Response] = []
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        # Authorization as each API request arrived (httpx.Auth resends the same object).
        self.api_auth: list[str | None] = []
        self._issued = 0
        self._lock = threading.Lock()

    def _next_token_answer(self) -> httpx.Response:
        with self._lock:
            index = len(self.token_requests) - 1
            if self.token_script:
                scripted = self.token_script[min(index, len(self.token_script) - 1)]
                if isinstance(scripted, Exception):
                    raise scripted
                return fresh(scripted)
            self._issued += 1
            body = {
                "access_token": f"tok-{self._issued}",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": "openid",
            }
            return httpx.Response(200, json=body, headers={"Cache-Control": "no-store"})

    def _record(self, request: httpx.Request) -> bool:
        """Logs the request; True for the token endpoint."""
        with self._lock:
            is_token = str(request.url) == TOKEN_URL
            (self.token_requests if is_token else self.api_requests).append(request)
            if not is_token:
                self.api_auth.append(request.headers.get("authorization"))
            return is_token

    def _api_answer(self) -> httpx.Response:
        with self._lock:
            index = len(self.api_requests) - 1
        if self.api_script:
            return fresh(self.api_script[min(index, len(self.api_script) - 1)])
        return httpx.Response(200, json={"data": []})

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self._record(request):
            return self._api_answer()
        if self.token_delay:
            time.sleep(self.token_delay)  # widens the window for racing threads
        return self._next_token_answer()

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        if not self._record(request):
            return self._api_answer()
        if self.token_delay:
            await asyncio.sleep(self.token_delay)  # every waiting task gets to run meanwhile
        return self._next_token_answer()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_async)

    def http(self) -> httpx.Client:
        return httpx.Client(transport=self.transport())

    def async_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.async_transport())


def fresh(template: httpx.Response) -> httpx.Response:
    """A new copy of a scripted answer: httpx binds a Response to the request it answers."""
    return httpx.Response(template.status_code, headers=template.headers, content=template.read())


def token_error(
    status: int, body: dict[str, str] | None = None, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json=body or {"error": "temporarily_unavailable"}, headers=headers
    )


def ok_token(value: str = "tok-ok", expires_in: int = 25200) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": value, "token_type": "Bearer", "expires_in": expires_in}
    )


def api_error(status: int, error: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "message": message})


UNAUTHORIZED = api_error(401, "unauthorized", "Unauthorized")


class Clock:
    """A stand-in for time.monotonic that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """Records the delays the client would have slept."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("centrali.client.time.monotonic", fake)
    return fake


@pytest.fixture
def max_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter pinned to its upper bound, so the backoff schedule is visible."""
    monkeypatch.setattr("centrali.client.random.uniform", lambda low, high: high)


@pytest.fixture
def no_jitter_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jitter pinned to 0: a CentraliClient's backoff (real time.sleep) costs nothing."""
    monkeypatch.setattr("centrali.client.random.uniform", lambda low, high: low)


@pytest.fixture
def make_client(backend: Backend) -> Iterator[Callable[..., CentraliClient]]:
    made: list[CentraliClient] = []

    def _make(**kwargs: Any) -> CentraliClient:
        http = kwargs.pop("http_client", None) or backend.http()
        sdk = CentraliClient(
            CLIENT_ID, CLIENT_SECRET, WS, base_url=BASE_URL, token_url=TOKEN_URL,
            http_client=http, **kwargs,
        )  # fmt: skip
        made.append(sdk)
        return sdk

    yield _make
    for sdk in made:
        sdk.close()


def provider(backend: Backend, sleeps: Sleeps, **kwargs: Any) -> TokenProvider:
    return TokenProvider(
        CLIENT_ID, CLIENT_SECRET, TOKEN_URL, http_client=backend.http(), sleep=sleeps, **kwargs
    )


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


# --- the token request and its cache -------------------------------------------------------


def test_token_request_is_the_guides_client_credentials_form(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    assert make_client().get_access_token() == "tok-1"
    (request,) = backend.token_requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(request) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "scope": ["openid"],
    }


def test_token_url_defaults_to_base_url_oidc_token() -> None:
    with CentraliClient(CLIENT_ID, CLIENT_SECRET, WS, base_url=BASE_URL + "/") as sdk:
        assert sdk.token_url == f"{BASE_URL}/oidc/token"


def test_get_access_token_is_cached_second_call_makes_no_request(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    sdk = make_client()
    first = sdk.get_access_token()
    second = sdk.get_access_token()
    assert first == second == "tok-1"
    assert len(backend.token_requests) == 1


def test_cached_token_is_kept_until_five_minutes_before_expiry_then_replaced(
    backend: Backend, make_client: Callable[..., CentraliClient], clock: Clock
) -> None:
    sdk = make_client()  # the server's default lifetime, 25200 s
    assert sdk.get_access_token() == "tok-1"
    clock.advance(25200 - 300 - 1)  # one second before the refresh margin
    assert sdk.get_access_token() == "tok-1"
    assert len(backend.token_requests) == 1
    clock.advance(2)  # inside the last five minutes
    assert sdk.get_access_token() == "tok-2"
    assert len(backend.token_requests) == 2
    assert sdk.get_access_token() == "tok-2"  # and the new one is cached in turn
    assert len(backend.token_requests) == 2


def test_small_expires_in_is_refreshed_before_the_token_expires(
    make_client: Callable[..., CentraliClient], clock: Clock
) -> None:
    backend = Backend(expires_in=120)  # shorter than the five-minute margin itself
    sdk = make_client(http_client=backend.http())
    assert sdk.get_access_token() == "tok-1"
    clock.advance(119)  # still valid on the server, but about to expire
    assert sdk.get_access_token() == "tok-2"
    assert len(backend.token_requests) == 2


def test_50_threads_on_a_cold_cache_cause_exactly_one_token_request(
    make_client: Callable[..., CentraliClient],
) -> None:
    backend = Backend(token_delay=0.05)
    sdk = make_client(http_client=backend.http())
    start = threading.Barrier(50)
    results: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            start.wait(timeout=5)
            results.append(sdk.get_access_token())
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert results == ["tok-1"] * 50
    assert len(backend.token_requests) == 1


# --- retries of the token request ----------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        token_error(429, {"error": "slow_down"}),
        token_error(500),
        token_error(502),
        token_error(503),
        token_error(504),
    ],
    ids=["connect-error", "read-timeout", "429", "500", "502", "503", "504"],
)
def test_transient_failures_are_retried_until_a_token_comes(
    backend: Backend, failure: httpx.Response | Exception, max_jitter: None
) -> None:
    backend.token_script = [failure, failure, ok_token("tok-after-retries")]
    sleeps = Sleeps()
    assert provider(backend, sleeps).get_token() == "tok-after-retries"
    assert len(backend.token_requests) == 3
    assert len(sleeps.delays) == 2


def test_backoff_is_exponential_with_full_jitter(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high / 2

    monkeypatch.setattr("centrali.client.random.uniform", uniform)
    backend.token_script = [httpx.ConnectError("down")] * 4 + [ok_token()]
    sleeps = Sleeps()
    provider(backend, sleeps, backoff_base=0.5).get_token()
    # Full jitter: each wait drawn from [0, base * 2**attempt].
    assert bounds == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 4.0)]
    assert sleeps.delays == [0.25, 0.5, 1.0, 2.0]


def test_backoff_is_capped(backend: Backend, max_jitter: None) -> None:
    backend.token_script = [token_error(503)] * 4 + [ok_token()]
    sleeps = Sleeps()
    provider(backend, sleeps, backoff_base=1.0, backoff_cap=3.0).get_token()
    assert sleeps.delays == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("status", [429, 503], ids=["429", "503"])
def test_retry_after_seconds_is_honoured(backend: Backend, status: int, max_jitter: None) -> None:
    backend.token_script = [token_error(status, headers={"Retry-After": "7"}), ok_token()]
    sleeps = Sleeps()
    assert provider(backend, sleeps).get_token() == "tok-ok"
    assert sleeps.delays == [7.0]


def test_retry_after_http_date_is_honoured(backend: Backend, max_jitter: None) -> None:
    when = formatdate(time.time() + 10, usegmt=True)
    backend.token_script = [token_error(503, headers={"Retry-After": when}), ok_token()]
    sleeps = Sleeps()
    provider(backend, sleeps).get_token()
    (delay,) = sleeps.delays
    assert 8.0 <= delay <= 10.0


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("connection refused"), token_error(503), token_error(429)],
    ids=["connect-error", "503", "429"],
)
def test_gives_up_after_5_attempts_with_centrali_auth_error(
    backend: Backend,
    failure: httpx.Response | Exception,
    make_client: Callable[..., CentraliClient],
    no_jitter_wait: None,
) -> None:
    backend.token_script = [failure]
    sdk = make_client()  # the default bound, the contract's "at most 5 attempts"
    with pytest.raises(CentraliAuthError):
        sdk.get_access_token()
    assert len(backend.token_requests) == 5


def test_gives_up_after_max_attempts_sleeping_between_attempts_only(
    backend: Backend, max_jitter: None
) -> None:
    backend.token_script = [token_error(503, headers={"Retry-After": "1"})]
    sleeps = Sleeps()
    with pytest.raises(CentraliAuthError) as caught:
        provider(backend, sleeps).get_token()
    assert len(backend.token_requests) == 5
    assert sleeps.delays == [1.0] * 4  # no pointless wait after the last attempt
    assert caught.value.status_code == 503


def test_connection_errors_to_the_end_raise_centrali_auth_error_not_httpx(
    backend: Backend, max_jitter: None
) -> None:
    backend.token_script = [httpx.ConnectError("connection refused")]
    with pytest.raises(CentraliAuthError) as caught:
        provider(backend, Sleeps()).get_token()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_invalid_client_is_never_retried(
    backend: Backend, make_client: Callable[..., CentraliClient], no_jitter_wait: None
) -> None:
    backend.token_script = [token_error(401, INVALID_CLIENT, headers={"WWW-Authenticate": "Basic"})]
    with pytest.raises(CentraliAuthError) as caught:
        make_client().get_access_token()
    assert len(backend.token_requests) == 1
    assert caught.value.error == "invalid_client"
    assert caught.value.description == "Invalid client credentials"
    assert caught.value.status_code == 401


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, "invalid_request"), (400, "invalid_scope"), (400, "unsupported_grant_type")],
    ids=["invalid_request", "invalid_scope", "unsupported_grant_type"],
)
def test_other_client_errors_are_not_retried_either(
    backend: Backend, status: int, error: str
) -> None:
    backend.token_script = [token_error(status, {"error": error, "error_description": "no"})]
    sleeps = Sleeps()
    with pytest.raises(CentraliAuthError) as caught:
        provider(backend, sleeps).get_token()
    assert len(backend.token_requests) == 1
    assert sleeps.delays == []
    assert (caught.value.error, caught.value.description) == (error, "no")


def test_failed_fetch_leaves_nothing_cached(backend: Backend) -> None:
    backend.token_script = [token_error(401, INVALID_CLIENT), ok_token("tok-later")]
    tokens = provider(backend, Sleeps())
    with pytest.raises(CentraliAuthError):
        tokens.get_token()
    assert tokens.get_token() == "tok-later"
    assert len(backend.token_requests) == 2


# --- make_request and the single 401 retry -------------------------------------------------


def test_make_request_sends_the_bearer_token_to_the_workspace_api(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    sdk = make_client()
    response = sdk.make_request(
        "POST",
        "/records",
        json={"recordSlug": "products", "data": {"name": "Laptop Pro"}},
        headers={"X-Trace": "abc"},
        params={"dry": "1"},
    )
    assert response.status_code == 200
    (request,) = backend.api_requests
    assert request.method == "POST"
    assert str(request.url) == f"{API_PREFIX}/records?dry=1"
    assert request.headers["authorization"] == "Bearer tok-1"
    assert request.headers["x-trace"] == "abc"
    assert json.loads(request.content) == {"recordSlug": "products", "data": {"name": "Laptop Pro"}}


def test_make_request_reuses_the_cached_token(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    sdk = make_client()
    for _ in range(3):
        sdk.make_request("GET", "/structures")
    assert len(backend.token_requests) == 1
    assert backend.api_auth == ["Bearer tok-1"] * 3


def test_make_request_does_not_modify_the_callers_headers(
    make_client: Callable[..., CentraliClient],
) -> None:
    headers = {"X-Trace": "abc"}
    make_client().make_request("GET", "/structures", headers=headers)
    assert headers == {"X-Trace": "abc"}


def test_api_401_fetches_a_new_token_once_and_retries_once(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    backend.api_script = [UNAUTHORIZED, httpx.Response(200, json={"data": [1]})]
    response = make_client().make_request("GET", "/structures")
    assert response.status_code == 200
    assert response.json() == {"data": [1]}
    assert len(backend.token_requests) == 2
    assert backend.api_auth == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_retried_request_resends_the_same_body(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    backend.api_script = [UNAUTHORIZED, httpx.Response(201, json={"id": 1})]
    body = {"recordSlug": "products", "data": {"name": "Laptop Pro", "price": 1299.99}}
    assert make_client().make_request("POST", "/records", json=body).status_code == 201
    first, second = backend.api_requests
    assert str(first.url) == str(second.url) == f"{API_PREFIX}/records"
    assert json.loads(first.content) == json.loads(second.content) == body


def test_second_401_is_returned_not_looped(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    backend.api_script = [UNAUTHORIZED]
    response = make_client().make_request("GET", "/structures")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "Unauthorized"}
    assert len(backend.api_requests) == 2
    assert len(backend.token_requests) == 2


@pytest.mark.parametrize("status", [403, 404, 500], ids=["403", "404", "500"])
def test_other_api_errors_are_returned_without_a_new_token(
    backend: Backend, make_client: Callable[..., CentraliClient], status: int
) -> None:
    backend.api_script = [api_error(status, "x", "y")]
    assert make_client().make_request("GET", "/structures").status_code == status
    assert len(backend.api_requests) == 1
    assert len(backend.token_requests) == 1


def test_401_whose_new_token_is_refused_raises_invalid_client(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    backend.token_script = [ok_token("tok-old"), token_error(401, INVALID_CLIENT)]
    backend.api_script = [UNAUTHORIZED]
    with pytest.raises(CentraliAuthError) as caught:
        make_client().make_request("GET", "/structures")
    assert caught.value.error == "invalid_client"
    assert len(backend.api_requests) == 1


# --- conveniences --------------------------------------------------------------------------


def test_conveniences_return_the_json_answers(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    sdk = make_client()
    backend.api_script = [httpx.Response(200, json={"data": [], "page": 2, "limit": 5})]
    assert sdk.list_structures(page=2, limit=5) == {"data": [], "page": 2, "limit": 5}
    backend.api_script, backend.api_requests = [httpx.Response(201, json={"id": 7})], []
    assert sdk.create_record("products", {"name": "Laptop Pro", "price": 1299.99}) == {"id": 7}
    backend.api_script, backend.api_requests = [httpx.Response(204)], []
    sdk.delete_record(7)
    assert str(backend.api_requests[0].url) == f"{API_PREFIX}/records/7"
    assert backend.api_requests[0].method == "DELETE"


def test_list_records_filters_by_record_slug(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    make_client().list_records("products", page=1, limit=50)
    (request,) = backend.api_requests
    assert request.url.path == f"/workspace/{WS}/api/v1/records"
    assert dict(request.url.params) == {"recordSlug": "products", "page": "1", "limit": "50"}


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (
            lambda sdk: sdk.get_structure("products"),
            api_error(404, "not_found", "Structure not found"),
        ),
        (
            lambda sdk: sdk.create_record("products", {"price": "cheap"}),
            api_error(400, "invalid_body", "price: must be a number"),
        ),
        (lambda sdk: sdk.list_structures(), api_error(403, "forbidden", "Forbidden: no")),
        (lambda sdk: sdk.get_record(1), UNAUTHORIZED),
    ],
    ids=["get_structure-404", "create_record-400", "list_structures-403", "get_record-401"],
)
def test_conveniences_raise_centrali_api_error(
    backend: Backend,
    make_client: Callable[..., CentraliClient],
    call: Callable[[CentraliClient], Any],
    answer: httpx.Response,
) -> None:
    backend.api_script = [answer]
    with pytest.raises(CentraliAPIError) as caught:
        call(make_client())
    body = answer.json()
    assert caught.value.status_code == answer.status_code
    assert caught.value.error == body["error"]
    assert caught.value.message == body["message"]


def test_api_error_without_a_json_body_still_has_status_and_message(
    backend: Backend, make_client: Callable[..., CentraliClient]
) -> None:
    backend.api_script = [httpx.Response(502, text="<html>bad gateway</html>")]
    with pytest.raises(CentraliAPIError) as caught:
        make_client().list_structures()
    assert caught.value.status_code == 502
    assert caught.value.message


# --- httpx.Auth ----------------------------------------------------------------------------


def test_centrali_auth_with_a_sync_httpx_client(backend: Backend) -> None:
    auth = CentraliAuth(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, provider=provider(backend, Sleeps()))
    with httpx.Client(transport=backend.transport(), auth=auth) as http:
        assert http.get(f"{API_PREFIX}/structures").status_code == 200
        assert http.get(f"{API_PREFIX}/records").status_code == 200
    assert backend.api_auth == ["Bearer tok-1"] * 2
    assert len(backend.token_requests) == 1


def test_centrali_auth_retries_a_401_once_with_a_new_token(backend: Backend) -> None:
    backend.api_script = [UNAUTHORIZED]
    auth = CentraliAuth(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, provider=provider(backend, Sleeps()))
    with httpx.Client(transport=backend.transport(), auth=auth) as http:
        assert http.get(f"{API_PREFIX}/structures").status_code == 401
    assert backend.api_auth == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_centrali_auth_with_an_async_httpx_client(backend: Backend) -> None:
    backend.api_script = [UNAUTHORIZED, httpx.Response(200, json={"data": []})]

    async def scenario() -> list[int]:
        async with backend.async_http() as token_http:
            tokens = AsyncTokenProvider(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, http_client=token_http)
            auth = CentraliAuth(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, async_provider=tokens)
            async with httpx.AsyncClient(transport=backend.async_transport(), auth=auth) as http:
                first = await http.get(f"{API_PREFIX}/structures")  # 401, then retried
                second = await http.get(f"{API_PREFIX}/structures")
                return [first.status_code, second.status_code]

    assert asyncio.run(scenario()) == [200, 200]
    assert backend.api_auth == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
    ]
    assert len(backend.token_requests) == 2


# --- the asyncio client --------------------------------------------------------------------


def run_async_client(
    backend: Backend, scenario: Callable[[AsyncCentraliClient], Any], **kwargs: Any
) -> Any:
    async def main() -> Any:
        async with backend.async_http() as http:
            sdk = AsyncCentraliClient(
                CLIENT_ID, CLIENT_SECRET, WS, base_url=BASE_URL, token_url=TOKEN_URL,
                http_client=http, **kwargs,
            )  # fmt: skip
            async with sdk:
                return await scenario(sdk)

    return asyncio.run(main())


def test_async_client_50_concurrent_calls_cause_one_token_request() -> None:
    backend = Backend(token_delay=0.05)

    async def scenario(sdk: AsyncCentraliClient) -> list[str]:
        return list(await asyncio.gather(*(sdk.get_access_token() for _ in range(50))))

    assert run_async_client(backend, scenario) == ["tok-1"] * 50
    assert len(backend.token_requests) == 1


def test_async_client_caches_and_sends_the_bearer_token(backend: Backend) -> None:
    async def scenario(sdk: AsyncCentraliClient) -> Any:
        await sdk.list_structures()
        return await sdk.create_record("products", {"name": "Laptop Pro"})

    assert run_async_client(backend, scenario) == {"data": []}
    assert [str(r.url) for r in backend.api_requests] == [
        f"{API_PREFIX}/structures?page=1&limit=20",
        f"{API_PREFIX}/records",
    ]
    assert backend.api_auth == ["Bearer tok-1"] * 2
    assert len(backend.token_requests) == 1


def test_async_client_retries_a_401_once(backend: Backend) -> None:
    backend.api_script = [UNAUTHORIZED]

    async def scenario(sdk: AsyncCentraliClient) -> int:
        return (await sdk.make_request("GET", "/structures")).status_code

    assert run_async_client(backend, scenario) == 401
    assert len(backend.api_requests) == 2
    assert len(backend.token_requests) == 2


def test_async_client_raises_typed_errors(backend: Backend) -> None:
    backend.api_script = [api_error(404, "not_found", "Record not found")]

    async def scenario(sdk: AsyncCentraliClient) -> Any:
        return await sdk.get_record(99)

    with pytest.raises(CentraliAPIError) as caught:
        run_async_client(backend, scenario)
    assert (caught.value.status_code, caught.value.message) == (404, "Record not found")


def test_async_provider_retries_with_backoff_and_gives_up(
    backend: Backend, max_jitter: None
) -> None:
    backend.token_script = [token_error(503, headers={"Retry-After": "2"})]
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def main() -> None:
        async with backend.async_http() as http:
            tokens = AsyncTokenProvider(
                CLIENT_ID, CLIENT_SECRET, TOKEN_URL, http_client=http, sleep=fake_sleep
            )
            await tokens.get_token()

    with pytest.raises(CentraliAuthError):
        asyncio.run(main())
    assert len(backend.token_requests) == 5
    assert delays == [2.0] * 4


def test_async_invalid_client_is_not_retried(backend: Backend) -> None:
    backend.token_script = [token_error(401, INVALID_CLIENT)]

    async def scenario(sdk: AsyncCentraliClient) -> str:
        return await sdk.get_access_token()

    with pytest.raises(CentraliAuthError) as caught:
        run_async_client(backend, scenario)
    assert caught.value.error == "invalid_client"
    assert len(backend.token_requests) == 1


# --- private_key_jwt and federated workload tokens -----------------------------------------

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY_ID = "k1-2026"
WORKLOAD_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y2kifQ.c2ln"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def pem(key: Any) -> bytes:
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data


def public_pem(key: Any) -> bytes:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def key_provider(backend: Backend, key: Any, **kwargs: Any) -> TokenProvider:
    return TokenProvider(
        CLIENT_ID, token_url=TOKEN_URL, private_key=key, http_client=backend.http(),
        sleep=Sleeps(), **kwargs,
    )  # fmt: skip


def file_provider(backend: Backend, path: Path, **kwargs: Any) -> TokenProvider:
    return TokenProvider(
        CLIENT_ID, token_url=TOKEN_URL, federated_token_file=path, http_client=backend.http(),
        sleep=Sleeps(), **kwargs,
    )  # fmt: skip


def assertion_of(request: httpx.Request) -> str:
    form = form_of(request)
    assert form["client_assertion_type"] == [ASSERTION_TYPE]
    (assertion,) = form["client_assertion"]
    return assertion


def verified_claims(request: httpx.Request, key: Any, algorithm: str) -> dict[str, Any]:
    """The assertion's claims, its signature checked with the public key (and aud, iss)."""
    claims: dict[str, Any] = jwt.decode(
        assertion_of(request),
        key.public_key(),
        algorithms=[algorithm],
        audience=TOKEN_URL,
        issuer=CLIENT_ID,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    return claims


@pytest.mark.parametrize(
    ("key_name", "options", "algorithm"),
    [
        ("rsa_key", {}, "RS256"),
        ("rsa_key", {"algorithm": "PS256"}, "PS256"),
        ("ec_key", {}, "ES256"),
        ("ed_key", {}, "EdDSA"),
    ],
    ids=["rsa-RS256", "rsa-PS256", "p256-ES256", "ed25519-EdDSA"],
)
@pytest.mark.parametrize("as_pem", [False, True], ids=["key-object", "pem"])
def test_private_key_jwt_form_carries_a_signed_assertion(
    backend: Backend,
    request: pytest.FixtureRequest,
    key_name: str,
    options: dict[str, str],
    algorithm: str,
    as_pem: bool,
) -> None:
    key = request.getfixturevalue(key_name)
    before = int(time.time())
    tokens = key_provider(backend, pem(key) if as_pem else key, key_id=KEY_ID, **options)
    assert tokens.get_token() == "tok-1"
    (sent,) = backend.token_requests
    form = form_of(sent)
    assert set(form) == {
        "grant_type", "client_id", "client_assertion_type", "client_assertion", "scope",
    }  # fmt: skip
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_id"] == [CLIENT_ID]
    claims = verified_claims(sent, key, algorithm)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 300  # the server takes at most 600
    assert before <= claims["iat"] <= int(time.time())
    assert len(claims["jti"]) >= 22
    header = jwt.get_unverified_header(assertion_of(sent))
    assert header["alg"] == algorithm
    assert header["kid"] == KEY_ID


def test_private_key_as_a_pem_string_and_no_key_id_means_no_kid(
    backend: Backend, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    key_provider(backend, pem(ec_key).decode()).get_token()
    (sent,) = backend.token_requests
    assert verified_claims(sent, ec_key, "ES256")["sub"] == CLIENT_ID
    assert "kid" not in jwt.get_unverified_header(assertion_of(sent))


def test_every_token_request_and_every_retry_signs_a_new_assertion(
    backend: Backend, ec_key: ec.EllipticCurvePrivateKey, clock: Clock, max_jitter: None
) -> None:
    backend.token_script = [token_error(503), ok_token("tok-a"), ok_token("tok-b")]
    tokens = key_provider(backend, ec_key, key_id=KEY_ID)
    assert tokens.get_token() == "tok-a"  # after one retry
    assert tokens.get_token() == "tok-a"  # cached: no new assertion
    clock.advance(25200)
    assert tokens.get_token() == "tok-b"
    assertions = [assertion_of(sent) for sent in backend.token_requests]
    jtis = [verified_claims(sent, ec_key, "ES256")["jti"] for sent in backend.token_requests]
    assert len(assertions) == 3
    assert len(set(assertions)) == 3
    assert len(set(jtis)) == 3  # single-use on the server: a retry must not reuse one


def test_client_with_a_private_key_signs_for_the_default_token_url(
    ed_key: ed25519.Ed25519PrivateKey,
) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/oidc/token":
            return ok_token()
        return httpx.Response(200, json={"data": []})

    http = httpx.Client(transport=httpx.MockTransport(handle))
    with CentraliClient(
        CLIENT_ID, workspace_slug=WS, base_url=BASE_URL, private_key=ed_key, http_client=http
    ) as sdk:
        assert sdk.list_structures() == {"data": []}
        assert sdk.auth_method == "private_key_jwt"
    token_request, api_request = seen
    claims = jwt.decode(
        assertion_of(token_request),
        ed_key.public_key(),
        algorithms=["EdDSA"],
        audience=f"{BASE_URL}/oidc/token",
    )
    assert claims["iss"] == CLIENT_ID
    assert api_request.headers["authorization"] == "Bearer tok-ok"


def test_api_401_with_a_private_key_fetches_with_a_fresh_assertion(
    backend: Backend, rsa_key: rsa.RSAPrivateKey
) -> None:
    backend.api_script = [UNAUTHORIZED, httpx.Response(200, json={"data": [1]})]
    sdk = CentraliClient(
        CLIENT_ID, workspace_slug=WS, base_url=BASE_URL, token_url=TOKEN_URL,
        private_key=rsa_key, key_id=KEY_ID, http_client=backend.http(),
    )  # fmt: skip
    assert sdk.make_request("GET", "/structures").json() == {"data": [1]}
    assert backend.api_auth == ["Bearer tok-1", "Bearer tok-2"]
    first, second = (verified_claims(r, rsa_key, "RS256") for r in backend.token_requests)
    assert first["jti"] != second["jti"]


def test_federated_form_passes_the_file_token_through_stripped(
    backend: Backend, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"\n  {WORKLOAD_TOKEN}\r\n\n")
    assert file_provider(backend, token_file).get_token() == "tok-1"
    (sent,) = backend.token_requests
    assert form_of(sent) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_assertion_type": [ASSERTION_TYPE],
        "client_assertion": [WORKLOAD_TOKEN],
        "scope": ["openid"],
    }


def test_federated_token_file_is_reread_for_every_token_request(
    backend: Backend, tmp_path: Path, clock: Clock
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("workload-token-1\n")
    sdk = CentraliClient(
        CLIENT_ID, workspace_slug=WS, base_url=BASE_URL, token_url=TOKEN_URL,
        federated_token_file=str(token_file), http_client=backend.http(),
    )  # fmt: skip
    assert sdk.get_access_token() == "tok-1"
    token_file.write_text("workload-token-2\n")  # the kubelet rotated it
    assert sdk.get_access_token() == "tok-1"  # cached: the file is not read for nothing
    clock.advance(25200)
    assert sdk.get_access_token() == "tok-2"
    backend.api_script = [UNAUTHORIZED, httpx.Response(200, json={"data": []})]
    token_file.write_text("workload-token-3")
    assert sdk.make_request("GET", "/structures").status_code == 200  # 401: one new token
    sent = [form_of(r)["client_assertion"] for r in backend.token_requests]
    assert sent == [["workload-token-1"], ["workload-token-2"], ["workload-token-3"]]


def test_federated_retry_after_a_5xx_rereads_the_file(
    backend: Backend, tmp_path: Path, max_jitter: None
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("before")
    backend.token_script = [token_error(503), ok_token()]
    tokens = TokenProvider(
        CLIENT_ID, token_url=TOKEN_URL, federated_token_file=token_file,
        http_client=backend.http(), sleep=lambda seconds: token_file.write_text("after"),
    )  # fmt: skip
    assert tokens.get_token() == "tok-ok"
    sent = [form_of(r)["client_assertion"] for r in backend.token_requests]
    assert sent == [["before"], ["after"]]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: path.write_text(""), "is empty"),
        (lambda path: path.write_text(" \n\t\n"), "is empty"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_bytes(b"\xff\xfe\x00token"), "is not UTF-8 text"),
    ],
    ids=["missing", "empty", "whitespace-only", "directory", "not-text"],
)
def test_unusable_federated_token_file_raises_the_clients_error_naming_the_path(
    backend: Backend, tmp_path: Path, setup: Callable[[Path], Any], reason: str
) -> None:
    token_file = tmp_path / "projected" / "token"
    token_file.parent.mkdir()
    setup(token_file)
    tokens = file_provider(backend, token_file)  # construction does not read the file
    with pytest.raises(CentraliCredentialError) as caught:
        tokens.get_token()
    assert str(token_file) in str(caught.value)
    assert reason in str(caught.value)
    assert caught.value.path == str(token_file)
    assert isinstance(caught.value, CentraliError)
    # Raised by the client itself, not an OSError surfacing from inside.
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert backend.token_requests == []  # nothing sent, nothing retried
    if not token_file.is_dir():  # once the file is good again, the same provider carries on
        token_file.write_text(WORKLOAD_TOKEN)
        assert tokens.get_token() == "tok-1"


def test_unreadable_federated_token_file_raises_the_clients_error(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WORKLOAD_TOKEN)

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(token_file))

    monkeypatch.setattr("centrali.client.open", denied, raising=False)  # root reads any mode
    with pytest.raises(CentraliCredentialError) as caught:
        file_provider(backend, token_file).get_token()
    expected = f"federated token file {str(token_file)!r} cannot be read: permission denied"
    assert str(caught.value) == expected
    assert caught.value.__context__ is None


def test_unusable_federated_token_file_through_the_client_and_async(
    backend: Backend, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    with CentraliClient(
        CLIENT_ID, workspace_slug=WS, federated_token_file=missing, http_client=backend.http()
    ) as sdk:
        with pytest.raises(CentraliCredentialError, match="nope"):
            sdk.list_structures()

    async def scenario() -> None:
        async with backend.async_http() as http:
            tokens = AsyncTokenProvider(
                CLIENT_ID, token_url=TOKEN_URL, federated_token_file=missing, http_client=http
            )
            await tokens.get_token()

    with pytest.raises(CentraliCredentialError, match="does not exist"):
        asyncio.run(scenario())
    assert backend.token_requests == [] and backend.api_requests == []


# construction refusals, for each of the five constructors


def build(kind: str, **credentials: Any) -> Any:
    http, async_http = httpx.Client(), httpx.AsyncClient()  # never used: refused first
    made: dict[str, Callable[[], Any]] = {
        "CentraliClient": lambda: CentraliClient(
            CLIENT_ID, workspace_slug=WS, http_client=http, **credentials
        ),
        "AsyncCentraliClient": lambda: AsyncCentraliClient(
            CLIENT_ID, workspace_slug=WS, http_client=async_http, **credentials
        ),
        "TokenProvider": lambda: TokenProvider(
            CLIENT_ID, token_url=TOKEN_URL, http_client=http, **credentials
        ),
        "AsyncTokenProvider": lambda: AsyncTokenProvider(
            CLIENT_ID, token_url=TOKEN_URL, http_client=async_http, **credentials
        ),
        "CentraliAuth": lambda: CentraliAuth(CLIENT_ID, token_url=TOKEN_URL, **credentials),
    }
    try:
        return made[kind]()
    finally:
        http.close()
        asyncio.run(async_http.aclose())


CONSTRUCTORS = [
    "CentraliClient", "AsyncCentraliClient", "TokenProvider", "AsyncTokenProvider", "CentraliAuth",
]  # fmt: skip


def encrypted_pem(key: Any) -> bytes:
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    return data


ONE_ONLY = "one credential only"
NOT_A_KEY = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
REFUSALS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    ("none", lambda k: {}, "no credential"),
    (
        "secret-and-key",
        lambda k: {"client_secret": CLIENT_SECRET, "private_key": k["ec"]},
        ONE_ONLY,
    ),
    ("secret-and-file", lambda k: {"client_secret": "s", "federated_token_file": "/t"}, ONE_ONLY),
    ("key-and-file", lambda k: {"private_key": k["ec"], "federated_token_file": "/t"}, ONE_ONLY),
    ("public-key-object", lambda k: {"private_key": k["ec"].public_key()}, "public key"),
    ("public-rsa-object", lambda k: {"private_key": k["rsa"].public_key()}, "public key"),
    ("public-key-pem", lambda k: {"private_key": public_pem(k["rsa"])}, "public key"),
    ("public-key-pem-str", lambda k: {"private_key": public_pem(k["ed"]).decode()}, "public key"),
    ("rsa-1024", lambda k: {"private_key": k["rsa1024"]}, "1024 bits is too weak"),
    ("rsa-1024-pem", lambda k: {"private_key": pem(k["rsa1024"])}, "1024 bits is too weak"),
    ("p384", lambda k: {"private_key": k["p384"]}, "unsupported elliptic curve secp384r1"),
    ("ed448", lambda k: {"private_key": k["ed448"]}, "unsupported key type"),
    ("not-a-key", lambda k: {"private_key": NOT_A_KEY}, "not a PEM-encoded private key"),
    ("encrypted-pem", lambda k: {"private_key": encrypted_pem(k["ec"])}, "encrypted"),
    ("wrong-algorithm", lambda k: {"private_key": k["rsa"], "algorithm": "ES256"}, "does not fit"),
    ("rs256-for-ec", lambda k: {"private_key": k["ec"], "algorithm": "RS256"}, "does not fit"),
    ("key-id-only", lambda k: {"client_secret": "s", "key_id": "k1"}, "private_key only"),
    ("empty-secret", lambda k: {"client_secret": ""}, "non-empty"),
]


@pytest.fixture(scope="module")
def keys(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, ed_key: Any
) -> dict[str, Any]:
    return {
        "rsa": rsa_key,
        "ec": ec_key,
        "ed": ed_key,
        "rsa1024": rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed448": ed448.Ed448PrivateKey.generate(),
    }


@pytest.mark.parametrize("kind", CONSTRUCTORS)
@pytest.mark.parametrize(
    ("credentials", "message"),
    [(make, message) for _, make, message in REFUSALS],
    ids=[name for name, _, _ in REFUSALS],
)
def test_unusable_credentials_are_refused_at_construction(
    keys: dict[str, Any],
    kind: str,
    credentials: Callable[[dict[str, Any]], dict[str, Any]],
    message: str,
) -> None:
    given = credentials(keys)
    with pytest.raises(CentraliCredentialError, match=message) as caught:
        build(kind, **given)
    text = str(caught.value)
    assert isinstance(caught.value, CentraliError)
    assert "BEGIN" not in text and CLIENT_SECRET not in text
    assert caught.value.__cause__ is None


def test_the_guides_positional_constructor_still_works(backend: Backend) -> None:
    sdk = CentraliClient(
        CLIENT_ID, CLIENT_SECRET, WS, BASE_URL, TOKEN_URL, http_client=backend.http()
    )
    assert (sdk.workspace_slug, sdk.base_url, sdk.auth_method) == (
        WS,
        BASE_URL,
        "client_secret_post",
    )
    assert sdk.get_access_token() == "tok-1"
    assert form_of(backend.token_requests[0])["client_secret"] == [CLIENT_SECRET]


def test_a_missing_workspace_or_token_url_is_a_type_error(ec_key: Any) -> None:
    with pytest.raises(TypeError, match="workspace_slug"):
        CentraliClient(CLIENT_ID, private_key=ec_key)
    with pytest.raises(TypeError, match="token_url"):
        TokenProvider(CLIENT_ID, private_key=ec_key)
    with pytest.raises(TypeError, match="token_url"):
        CentraliAuth(CLIENT_ID, federated_token_file="/t")


# the async side


def test_async_client_with_a_private_key(backend: Backend, ed_key: Any) -> None:
    backend.api_script = [UNAUTHORIZED, httpx.Response(200, json={"data": []})]

    async def main() -> Any:
        async with backend.async_http() as http:
            async with AsyncCentraliClient(
                CLIENT_ID, workspace_slug=WS, base_url=BASE_URL, token_url=TOKEN_URL,
                private_key=pem(ed_key), key_id=KEY_ID, http_client=http,
            ) as sdk:  # fmt: skip
                assert sdk.auth_method == "private_key_jwt"
                return await sdk.list_structures()

    assert asyncio.run(main()) == {"data": []}
    assert backend.api_auth == ["Bearer tok-1", "Bearer tok-2"]
    claims = [verified_claims(r, ed_key, "EdDSA") for r in backend.token_requests]
    assert len({c["jti"] for c in claims}) == 2
    assert all(c["exp"] - c["iat"] <= 600 for c in claims)
    assert jwt.get_unverified_header(assertion_of(backend.token_requests[0]))["kid"] == KEY_ID


def test_async_client_rereads_the_federated_token_file(
    backend: Backend, tmp_path: Path, clock: Clock
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("w-1")

    async def main() -> None:
        async with backend.async_http() as http:
            sdk = AsyncCentraliClient(
                CLIENT_ID, workspace_slug=WS, base_url=BASE_URL, token_url=TOKEN_URL,
                federated_token_file=token_file, http_client=http,
            )  # fmt: skip
            assert await sdk.get_access_token() == "tok-1"
            token_file.write_text("w-2\n")
            clock.advance(25200)
            assert await sdk.get_access_token() == "tok-2"

    asyncio.run(main())
    sent = [form_of(r)["client_assertion"] for r in backend.token_requests]
    assert sent == [["w-1"], ["w-2"]]


def test_centrali_auth_with_a_private_key_sync_and_async(backend: Backend, rsa_key: Any) -> None:
    auth = CentraliAuth(CLIENT_ID, token_url=TOKEN_URL, private_key=pem(rsa_key), algorithm="PS256")
    auth._provider = TokenProvider(  # the same credential, on the mock transport
        CLIENT_ID, token_url=TOKEN_URL, http_client=backend.http(), **auth._arguments()
    )
    with httpx.Client(transport=backend.transport(), auth=auth) as http:
        assert http.get(f"{API_PREFIX}/structures").status_code == 200

    async def main() -> int:
        async with backend.async_http() as token_http:
            auth._async_provider = AsyncTokenProvider(
                CLIENT_ID, token_url=TOKEN_URL, http_client=token_http, **auth._arguments()
            )
            async with httpx.AsyncClient(transport=backend.async_transport(), auth=auth) as http:
                return (await http.get(f"{API_PREFIX}/structures")).status_code

    assert asyncio.run(main()) == 200
    assert backend.api_auth == ["Bearer tok-1", "Bearer tok-2"]
    for sent in backend.token_requests:
        assert verified_claims(sent, rsa_key, "PS256")["sub"] == CLIENT_ID


def test_centrali_auth_makes_its_providers_from_the_checked_credential(
    tmp_path: Path, ec_key: Any
) -> None:
    token_file = tmp_path / "token"
    by_file = CentraliAuth(CLIENT_ID, token_url=TOKEN_URL, federated_token_file=token_file)
    by_key = CentraliAuth(CLIENT_ID, token_url=TOKEN_URL, private_key=ec_key, key_id=KEY_ID)
    assert by_file.provider.auth_method == by_file.async_provider.auth_method == "federated"
    assert by_key.provider.auth_method == "private_key_jwt"
    assert by_key.provider.token_url == TOKEN_URL
    by_file.provider.close()
    by_key.provider.close()
    asyncio.run(by_file.async_provider.aclose())


# nothing of a key, an assertion or a workload token is ever shown


def test_repr_and_errors_never_show_a_key_an_assertion_or_a_workload_token(
    backend: Backend, tmp_path: Path, rsa_key: Any, max_jitter: None
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WORKLOAD_TOKEN)
    key_pem = pem(rsa_key).decode()
    http, async_http = backend.http(), backend.async_http()
    by_key: dict[str, Any] = {"private_key": key_pem, "key_id": KEY_ID}
    by_file: dict[str, Any] = {"federated_token_file": token_file}
    shown: list[Any] = []
    for credentials in (by_key, by_file):
        shown += [
            CentraliClient(CLIENT_ID, workspace_slug=WS, http_client=http, **credentials),
            AsyncCentraliClient(
                CLIENT_ID, workspace_slug=WS, http_client=async_http, **credentials
            ),
            TokenProvider(CLIENT_ID, token_url=TOKEN_URL, http_client=http, **credentials),
            AsyncTokenProvider(
                CLIENT_ID, token_url=TOKEN_URL, http_client=async_http, **credentials
            ),
            CentraliAuth(CLIENT_ID, token_url=TOKEN_URL, **credentials),
        ]
    # Refusals and transport failures, after an assertion was made and sent.
    backend.token_script = [token_error(401, INVALID_CLIENT)]
    errors: list[BaseException] = []
    for tokens in (shown[2], shown[7]):
        with pytest.raises(CentraliAuthError) as caught:
            tokens.get_token()
        errors.append(caught.value)
    backend.token_script = [httpx.ConnectError("connection refused")]
    for tokens in (shown[2], shown[7]):
        tokens._sleep = Sleeps()
        with pytest.raises(CentraliAuthError) as caught:
            tokens.get_token()
        errors.append(caught.value)
    assertions = {form_of(r)["client_assertion"][0] for r in backend.token_requests}
    assert WORKLOAD_TOKEN in assertions and len(assertions) > 2
    texts = [repr(obj) for obj in shown] + [str(obj) for obj in shown]
    texts += [repr(error) for error in errors] + [str(error) for error in errors]
    texts += [repr(vars(obj).get("_credential")) for obj in shown]
    assert "auth='private_key_jwt'" in repr(shown[0]) and "auth='federated'" in repr(shown[5])
    for text in texts:
        assert "PRIVATE KEY" not in text and key_pem[40:80] not in text, text
        assert all(assertion not in text for assertion in assertions), text
        assert WORKLOAD_TOKEN not in text, text
    http.close()
    asyncio.run(async_http.aclose())


# --- secrets stay out of sight; the package stays light -------------------------------------


def test_repr_and_errors_never_contain_the_secret(backend: Backend) -> None:
    http = backend.http()
    async_http = backend.async_http()
    shown = [
        CentraliClient(CLIENT_ID, CLIENT_SECRET, WS, http_client=http),
        AsyncCentraliClient(CLIENT_ID, CLIENT_SECRET, WS, http_client=async_http),
        TokenProvider(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, http_client=http),
        AsyncTokenProvider(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, http_client=async_http),
        CentraliAuth(CLIENT_ID, CLIENT_SECRET, TOKEN_URL),
    ]
    texts = [repr(obj) for obj in shown] + [str(obj) for obj in shown]
    assert CLIENT_ID in repr(shown[0])  # the repr does say who it is
    assert all(CLIENT_SECRET not in text for text in texts), texts
    assert all("sk_" not in text for text in texts), texts


EXPORTED = [
    "AsyncCentraliClient",
    "AsyncTokenProvider",
    "CentraliAPIError",
    "CentraliAuth",
    "CentraliAuthError",
    "CentraliClient",
    "CentraliCredentialError",
    "CentraliError",
    "TokenProvider",
    "__version__",
]


def test_import_centrali_loads_only_the_client() -> None:
    script = (
        "import json, sys\n"
        "import centrali\n"
        "print(json.dumps({'all': centrali.__all__, 'modules': sorted(sys.modules)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(result.stdout)
    roots = {name.split(".")[0] for name in report["modules"]}
    # Issue 3: the client "depends on httpx only; importing it pulls in no server code".
    # PyJWT and cryptography wait until a private key is used.
    heavy = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "jwt", "cryptography"}
    assert roots.isdisjoint(heavy)
    # The client itself loads when a name of it is first used (centrali.__getattr__).
    assert [m for m in report["modules"] if m.startswith("centrali")] == ["centrali"]
    assert report["all"] == EXPORTED


def test_package_exports_the_client() -> None:
    assert centrali.__all__ == EXPORTED
    assert centrali.CentraliClient is CentraliClient
