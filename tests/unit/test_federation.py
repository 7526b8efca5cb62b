"""services.federation.IssuerKeyCache: discovery → JWKS over HTTP (httpx.MockTransport),
cached by Cache-Control, an unknown kid refetched at most once a minute, an unreadable
issuer a 503 that caches nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from centrali.oauth.client_assertions import IssuerUnavailableError
from centrali.services.federation import IssuerKeyCache

ISSUER = "https://token.actions.example"
JWKS_URI = f"{ISSUER}/.well-known/jwks"
KEY_1 = {"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB", "use": "sig"}
KEY_2 = {"kty": "RSA", "kid": "k2", "n": "AQAB", "e": "AQAB"}


class FakeIssuer:
    """Answers discovery and JWKS; counts the requests; can be broken."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [KEY_1]
        self.calls: list[str] = []
        self.cache_control: str | None = "public, max-age=600"
        self.document: Any = {"issuer": ISSUER, "jwks_uri": JWKS_URI}
        self.break_with: Callable[[httpx.Request], httpx.Response] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if self.break_with is not None:
            return self.break_with(request)
        headers = {"cache-control": self.cache_control} if self.cache_control else {}
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.document, headers=headers)
        if str(request.url) == JWKS_URI:
            return httpx.Response(200, json={"keys": self.keys}, headers=headers)
        return httpx.Response(404)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cache_for(issuer: FakeIssuer, clock: Clock, **options: Any) -> IssuerKeyCache:
    return IssuerKeyCache(transport=httpx.MockTransport(issuer.handle), clock=clock, **options)


def find(cache: IssuerKeyCache, kid: str | None, iss: str = ISSUER) -> Any:
    async def go() -> Any:
        try:
            return await cache.find_key(iss, kid)
        finally:
            await cache.close()

    return asyncio.run(go())


def test_keys_are_found_through_discovery_and_cached(issuer: FakeIssuer, clock: Clock) -> None:
    cache = cache_for(issuer, clock)
    assert find(cache, "k1") == KEY_1
    assert find(cache, "k1") == KEY_1
    assert issuer.calls == ["/.well-known/openid-configuration", "/.well-known/jwks"]


def test_without_kid_the_only_key_is_used(issuer: FakeIssuer, clock: Clock) -> None:
    cache = cache_for(issuer, clock)
    assert find(cache, None) == KEY_1
    issuer.keys = [KEY_1, KEY_2]
    clock.now += 601
    assert find(cache, None) is None  # two keys: the kid must say which


def test_cache_control_max_age_is_honoured_up_to_an_hour(issuer: FakeIssuer, clock: Clock) -> None:
    issuer.cache_control = "max-age=86400"
    cache = cache_for(issuer, clock)
    find(cache, "k1")
    clock.now += 3599
    find(cache, "k1")
    assert len(issuer.calls) == 2
    clock.now += 2
    find(cache, "k1")
    assert len(issuer.calls) == 4  # an hour at most


def test_an_unknown_kid_refetches_at_most_once_a_minute(issuer: FakeIssuer, clock: Clock) -> None:
    cache = cache_for(issuer, clock)
    find(cache, "k1")
    issuer.keys = [KEY_1, KEY_2]  # the issuer rotated in a new key
    clock.now += 30
    assert find(cache, "k2") is None  # too soon after the last fetch
    clock.now += 31
    assert find(cache, "k2") == KEY_2  # refetched
    assert find(cache, "k3") is None
    assert len(issuer.calls) == 4


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("no answer", request=request)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda r: httpx.Response(500), id="http-500"),
        pytest.param(lambda r: httpx.Response(200, content=b"<html>"), id="not-json"),
        pytest.param(lambda r: httpx.Response(200, content=b"[" * 300_000), id="oversize"),
        pytest.param(lambda r: httpx.Response(302, headers={"location": "/x"}), id="redirect"),
        pytest.param(_timeout, id="timeout"),
    ],
)
def test_an_unreadable_issuer_is_503_caches_nothing_and_backs_off(
    issuer: FakeIssuer, clock: Clock, broken: Callable[[httpx.Request], httpx.Response]
) -> None:
    cache = cache_for(issuer, clock)
    issuer.break_with = broken
    with pytest.raises(IssuerUnavailableError) as info:
        find(cache, "k1")
    assert info.value.status_code == 503
    assert 1 <= int(info.value.headers()["Retry-After"]) <= 10
    calls = len(issuer.calls)
    issuer.break_with = None
    with pytest.raises(IssuerUnavailableError):
        find(cache, "k1")  # backing off: the issuer is left alone
    assert len(issuer.calls) == calls
    clock.now += 10
    assert find(cache, "k1") == KEY_1  # nothing was cached from the broken answers


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"issuer": ISSUER}, id="no-jwks-uri"),
        pytest.param({"issuer": "https://other.example", "jwks_uri": JWKS_URI}, id="other-issuer"),
        pytest.param({"issuer": ISSUER, "jwks_uri": "http://plain.example/jwks"}, id="http-jwks"),
        pytest.param(["not", "an", "object"], id="not-an-object"),
    ],
)
def test_a_bad_discovery_document_is_503(issuer: FakeIssuer, clock: Clock, document: Any) -> None:
    issuer.document = document
    with pytest.raises(IssuerUnavailableError):
        find(cache_for(issuer, clock), "k1")


def test_a_jwks_without_keys_is_503(issuer: FakeIssuer, clock: Clock) -> None:
    issuer.break_with = lambda r: (
        httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": JWKS_URI})
        if r.url.path.endswith("openid-configuration")
        else httpx.Response(200, content=json.dumps({"nokeys": []}).encode())
    )
    with pytest.raises(IssuerUnavailableError):
        find(cache_for(issuer, clock), "k1")


def test_plain_http_issuers_only_when_allowed(clock: Clock) -> None:
    plain = "http://127.0.0.1:9"
    issuer = FakeIssuer()
    issuer.document = {"issuer": plain, "jwks_uri": f"{plain}/jwks"}
    with pytest.raises(IssuerUnavailableError):
        find(cache_for(issuer, clock), "k1", iss=plain)
    assert issuer.calls == []  # not even asked
    allowed = cache_for(issuer, clock, allow_http=True)
    issuer.break_with = lambda r: (
        httpx.Response(200, json=issuer.document)
        if r.url.path.endswith("openid-configuration")
        else httpx.Response(200, json={"keys": [KEY_1]})
    )
    assert find(allowed, "k1", iss=plain) == KEY_1


def test_a_hanging_issuer_gives_up_after_the_timeout(issuer: FakeIssuer, clock: Clock) -> None:
    class Hanging(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    cache = IssuerKeyCache(transport=Hanging(), clock=clock, timeout=0.2)

    async def go() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(IssuerUnavailableError):
            await cache.find_key(ISSUER, "k1")
        await cache.close()
        return loop.time() - started

    assert asyncio.run(go()) < 2.0


def test_concurrent_requests_share_one_fetch(issuer: FakeIssuer, clock: Clock) -> None:
    cache = cache_for(issuer, clock)

    async def go() -> list[Any]:
        found = await asyncio.gather(*(cache.find_key(ISSUER, "k1") for _ in range(10)))
        await cache.close()
        return list(found)

    assert asyncio.run(go()) == [KEY_1] * 10
    assert len(issuer.calls) == 2
