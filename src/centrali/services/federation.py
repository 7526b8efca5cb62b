"""The keys of external OpenID Connect issuers (federated workload credentials): the
``IssuerKeys`` port of ``oauth.client_assertions`` over HTTP.

``{issuer}/.well-known/openid-configuration`` names ``jwks_uri``; both answers are read with
httpx on the event loop (nothing blocks it), each within ``timeout`` seconds and at most
``max_bytes``. The keys are cached per issuer for the answer's ``Cache-Control: max-age``
(between ``min_age`` and ``max_age``; ``default_age`` without one); a ``kid`` the cache does
not hold refetches at most once per ``refetch_interval``. One fetch per issuer at a time: the
requests that need it wait for it. An issuer that cannot be read (no answer in time, an HTTP
error, not JSON, too big, no ``jwks_uri``, an ``issuer`` that is not itself) caches nothing
and makes its requests answer 503 ``temporarily_unavailable`` with ``Retry-After``; after a
failure the issuer is left alone for ``failure_backoff`` seconds (503 meanwhile). Other
issuers, and every other client, are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from centrali.oauth.client_assertions import IssuerUnavailableError

log = logging.getLogger("centrali.federation")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,10})\s*(?:,|$)", re.IGNORECASE)


class _Garbage(Exception):
    """The issuer answered, but not with what it must."""


@dataclass
class _Entry:
    keys: list[dict[str, Any]]
    fetched_at: float
    fresh_until: float

    def find(self, kid: str | None) -> dict[str, Any] | None:
        usable = [k for k in self.keys if k.get("use", "sig") == "sig"]
        if kid is None:
            return usable[0] if len(usable) == 1 else None
        return next((k for k in usable if k.get("kid") == kid), None)


@dataclass
class IssuerKeyCache:
    """``IssuerKeys`` with a per-process cache (see the module docstring)."""

    allow_http: bool = False
    timeout: float = 5.0
    max_bytes: int = 256 * 1024
    min_age: float = 60.0
    default_age: float = 300.0
    max_age: float = 3600.0
    refetch_interval: float = 60.0
    failure_backoff: float = 10.0
    max_issuers: int = 1000
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _failed_until: dict[str, float] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None

    async def find_key(self, issuer: str, kid: str | None) -> Mapping[str, Any] | None:
        entry = self._entries.get(issuer)
        now = self.clock()
        if entry is not None and now < entry.fresh_until:
            found = entry.find(kid)
            if found is not None or now - entry.fetched_at < self.refetch_interval:
                return found
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            entry = self._entries.get(issuer)
            now = self.clock()
            if entry is not None and now - entry.fetched_at < self.refetch_interval:
                return entry.find(kid)  # fetched while this request waited
            failed_until = self._failed_until.get(issuer, 0.0)
            if now < failed_until:
                raise IssuerUnavailableError(
                    retry_after=math.ceil(failed_until - now), detail="issuer backing off"
                )
            try:
                entry = await self._fetch(issuer)
            except (httpx.HTTPError, TimeoutError, _Garbage) as exc:
                self._failed_until[issuer] = self.clock() + self.failure_backoff
                self._entries.pop(issuer, None)
                log.warning("federation: issuer %s unavailable: %s", issuer, _reason(exc))
                raise IssuerUnavailableError(
                    retry_after=math.ceil(self.failure_backoff), detail=f"issuer: {_reason(exc)}"
                ) from exc
            self._failed_until.pop(issuer, None)
            if len(self._entries) >= self.max_issuers and issuer not in self._entries:
                oldest = min(self._entries, key=lambda i: self._entries[i].fetched_at)
                del self._entries[oldest]
            self._entries[issuer] = entry
            return entry.find(kid)

    async def _fetch(self, issuer: str) -> _Entry:
        async with asyncio.timeout(self.timeout):
            document, _ = await self._get_json(
                f"{issuer.rstrip('/')}/.well-known/openid-configuration"
            )
            if not isinstance(document, dict) or document.get("issuer") != issuer:
                raise _Garbage("discovery document of another issuer, or not an object")
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not self._allowed(jwks_uri):
                raise _Garbage("no usable jwks_uri")
            jwks, age = await self._get_json(jwks_uri)
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise _Garbage("JWKS without a keys list")
        now = self.clock()
        return _Entry(keys=keys, fetched_at=now, fresh_until=now + age)

    def _allowed(self, url: str) -> bool:
        return url.startswith("https://") or (self.allow_http and url.startswith("http://"))

    async def _get_json(self, url: str) -> tuple[Any, float]:
        if not self._allowed(url):
            raise _Garbage("not an https URL")
        client = self._http()
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as answer:
            if answer.status_code != 200:
                raise _Garbage(f"HTTP {answer.status_code}")
            body = bytearray()
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise _Garbage(f"answer over {self.max_bytes} bytes")
            age = self._age(answer.headers.get("cache-control"))
        try:
            return json.loads(bytes(body)), age
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Garbage("not JSON") from exc

    def _age(self, cache_control: str | None) -> float:
        if not cache_control:
            return self.default_age
        found = _MAX_AGE.search(cache_control)
        age = float(found.group(1)) if found else self.default_age
        if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
            age = 0.0
        return min(self.max_age, max(self.min_age, age))

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self.transport,
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                headers={"User-Agent": "centrali-auth"},
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
