"""``POST /oidc/token`` as a bare ASGI handler, in front of the framework.

The token endpoint is the hot path: one indexed lookup, one hash, one RSA signature. Routing,
dependency injection and the middleware stack would cost more than the lookup, so the
dispatcher answers this one path itself and hands everything else to the FastAPI app;
``token_openapi()`` describes it in the app's OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from centrali.oauth.client_auth import NONE, is_lookup_id
from centrali.oauth.errors import InvalidClientError, OAuthError, TemporarilyUnavailableError
from centrali.oauth.grants import TokenResponse
from centrali.oauth.limits import NOTHING_TAKEN, SlowDownError
from centrali.oauth.ports import ClientRecord, ClientStore
from centrali.oauth.token_endpoint import (
    PreparedTokenRequest,
    TokenRequest,
    complete_token_request,
    parse_form,
    prepare_token_request,
)
from centrali.services.oidc import complete_user_grant
from centrali.store.client_store import StoreUnavailableError
from centrali.web import metrics
from centrali.web.body_limit import too_large_body
from centrali.web.runtime import Runtime

log = logging.getLogger("centrali.web")

TOKEN_PATH = "/oidc/token"
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
_BODY_TIMEOUT = {"error": "invalid_request", "error_description": "Request body too slow"}
# Refusals counted per account in the store (the rest are the caller's own mistakes).
_COUNTED = frozenset({"unknown_client", "wrong_secret", "inactive_client", "rate_limited"})
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class _Disconnected(Exception):
    pass


class _WaitFirst(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class _LoopClock:
    """Wall-clock time; a wait the core asks for (see ClientCredentialsGrant) is done by the
    dispatcher with ``asyncio.sleep`` instead of blocking the event loop."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        raise _WaitFirst(seconds)


_LOOP_CLOCK = _LoopClock()


_CLIENT_FAILURES = {
    "unknown client": "unknown_client",
    "wrong secret": "wrong_secret",
    "client not active": "inactive_client",
}


def refusal_reason(exc: OAuthError) -> str:
    """A short, bounded label for a refusal: the metrics' ``reason`` and the failure counts'."""
    if isinstance(exc, InvalidClientError):
        return _CLIENT_FAILURES.get(exc.detail or "", "no_credentials")
    if isinstance(exc, SlowDownError):
        return "rate_limited"
    if isinstance(exc, TemporarilyUnavailableError):
        return "unavailable"
    return exc.error


class _Fetched:
    """A ClientStore that answers with the record already looked up for this request."""

    def __init__(self, client_id: str, record: ClientRecord | None, store: ClientStore) -> None:
        self._client_id = client_id
        self._record = record
        self._store = store

    def find_client(self, client_id: str) -> ClientRecord | None:
        if client_id == self._client_id:
            return self._record
        return self._store.find_client(client_id)


async def look_up_client(runtime: Runtime, prepared: PreparedTokenRequest) -> ClientRecord | None:
    """The record of a confidential client's id, gathered with the other lookups of this loop
    turn into one statement (web.batching); None when there is nothing to look up (a
    public client's user grant, or an id that may not reach SQL)."""
    if prepared.needs_user_store or not is_lookup_id(prepared.client_id):
        return None
    try:
        return await runtime.client_lookups.find(prepared.client_id)
    except StoreUnavailableError as exc:
        metrics.STORE_ERRORS.labels("token").inc()
        raise TemporarilyUnavailableError(detail=f"store: {exc}") from exc


async def issue_token(
    runtime: Runtime, prepared: PreparedTokenRequest, record: ClientRecord | None
) -> TokenResponse:
    """The token endpoint's work, on the event loop, once the client is looked up
    (``record``, from look_up_client): one hash, one signature, no await in between. A
    thread hop would cost more than the work.

    A public client's authorization_code or refresh_token request is the exception: it
    writes to the store (consumes the code, rotates the refresh token) in a transaction that
    may wait for a lock, so it runs in a worker thread."""
    if prepared.needs_user_store:
        try:
            return await asyncio.to_thread(
                complete_user_grant,
                prepared,
                clients=runtime.clients,
                config=runtime.issuer_config,
                clock=runtime.clock,
                db=runtime.db,
                settings=runtime.settings,
            )
        except StoreUnavailableError as exc:
            metrics.STORE_ERRORS.labels("token").inc()
            raise TemporarilyUnavailableError(detail=f"store: {exc}") from exc
    for _ in range(4):
        try:
            return complete_token_request(
                prepared,
                clients=_Fetched(prepared.client_id, record, runtime.clients),
                config=runtime.issuer_config,
                clock=_LOOP_CLOCK,
            )
        except _WaitFirst as wait:
            # The loop's timer runs on the monotonic clock and may wake a hair before the
            # wall-clock second the grant waits for: a few milliseconds more make sure.
            await asyncio.sleep(min(wait.seconds, 1.0) + 0.005)
            record = await look_up_client(runtime, prepared)
        except StoreUnavailableError as exc:
            metrics.STORE_ERRORS.labels("token").inc()
            raise TemporarilyUnavailableError(detail=f"store: {exc}") from exc
    raise TemporarilyUnavailableError()


class TokenDispatcher:
    """Answers ``POST /oidc/token`` directly; passes every other request to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        runtime: Callable[[], Runtime],
        max_body_bytes: int,
        body_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TOKEN_PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            refusal = {"error": "invalid_request", "error_description": "Use POST"}
            await _answer(send, 405, refusal, [(b"allow", b"POST")])
            return
        content_type = authorization = None
        too_large = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                too_large = not value.isdigit() or int(value) > self.max_body_bytes
        try:
            body = b"" if too_large else await self._read_body(receive)
        except _Disconnected:
            return  # nobody to answer
        except TimeoutError:
            metrics.TOKENS_REFUSED.labels("body_timeout").inc()
            await _answer(send, 408, _BODY_TIMEOUT, [(b"connection", b"close")])
            return
        if too_large or body is None:
            metrics.TOKENS_REFUSED.labels("body_too_large").inc()
            await _answer(send, 413, too_large_body(TOKEN_PATH), [(b"connection", b"close")])
            return
        runtime = self.runtime()
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        prepared: PreparedTokenRequest | None = None
        limiter = runtime.limiter
        now = time.time()
        try:
            form = parse_form(content_type, body)
            try:
                prepared = prepare_token_request(
                    TokenRequest(form=form, authorization=authorization)
                )
            except InvalidClientError:
                # No credentials at all: a failed authentication of this address, refused
                # with 429 like any other while the address is held back.
                if limiter is not None:
                    await limiter.admit(ip, None, now)
                raise
            public = prepared.credentials.method == NONE
            # A request the limits already refuse costs no lookup (check takes nothing). The
            # lookup (which may wait for the end of this loop turn) holds no limit tokens:
            # with the in-memory buckets, admit, the secret check and settle run in one
            # step of this task, so concurrent good requests never hold back one another's
            # failure budget, and a burst of guesses still gets no more checks than the limit.
            if limiter is not None:
                await limiter.check(ip, prepared.client_id, now, public=public)
            record = await look_up_client(runtime, prepared)
            admission = NOTHING_TAKEN
            if limiter is not None:
                admission = await limiter.admit(ip, prepared.client_id, now, public=public)
            outcome = "other"
            try:
                response = await issue_token(runtime, prepared, record)
                outcome = "issued"
            except InvalidClientError:
                outcome = "auth_failed"
                raise
            finally:
                if limiter is not None:
                    await limiter.settle(admission, outcome, now)
        except OAuthError as exc:
            reason = refusal_reason(exc)
            metrics.TOKENS_REFUSED.labels(reason).inc()
            if prepared is not None and reason in _COUNTED:
                runtime.token_failures.record(prepared.client_id, reason)
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
            await _answer(send, exc.status_code, exc.body(), headers)
            return
        except Exception:  # a bug: a fixed answer on the wire, the traceback in the log
            log.exception("token endpoint failed")
            metrics.TOKENS_REFUSED.labels("server_error").inc()
            failure = {"error": "server_error", "error_description": "Internal server error"}
            await _answer(send, 500, failure, [])
            return
        metrics.TOKENS_ISSUED.labels(prepared.grant.grant_type).inc()
        await _answer(send, 200, response.body(), [])

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it outgrows the limit; TimeoutError when the client
        takes longer than ``body_timeout`` to send it (a slow client holds no worker)."""
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.body_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    return None
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)


async def _answer(
    send: Send, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]]
) -> None:
    body = _dumps(payload).encode()
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def token_openapi() -> dict[str, Any]:
    """The OpenAPI path item of the token endpoint."""
    error = {"$ref": "#/components/schemas/OAuthError"}
    return {
        "post": {
            "tags": ["oidc"],
            "summary": "Token",
            "description": (
                "OAuth 2.0 token endpoint: client_credentials (RFC 6749 §4.4) for service "
                "accounts; authorization_code with PKCE (§4.1.3, RFC 7636) and refresh_token "
                "(§6, rotated) for public clients (client_id, no secret)."
            ),
            "operationId": "token",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {
                                    "type": "string",
                                    "enum": [
                                        "client_credentials",
                                        "authorization_code",
                                        "refresh_token",
                                    ],
                                },
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                                "scope": {"type": "string"},
                                "code": {"type": "string"},
                                "redirect_uri": {"type": "string"},
                                "code_verifier": {"type": "string"},
                                "refresh_token": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "An access token",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["access_token", "token_type", "expires_in", "scope"],
                                "properties": {
                                    "access_token": {"type": "string"},
                                    "token_type": {"type": "string", "enum": ["Bearer"]},
                                    "expires_in": {"type": "integer"},
                                    "scope": {"type": "string"},
                                    "refresh_token": {"type": "string"},
                                    "id_token": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": error}},
                    }
                    for code, text in (
                        (
                            "400",
                            "invalid_request, unsupported_grant_type, invalid_scope, "
                            "invalid_grant, unauthorized_client",
                        ),
                        ("401", "invalid_client"),
                        ("408", "body too slow"),
                        ("413", "body too large"),
                        ("429", "slow_down: an abuse limit holds (Retry-After)"),
                        ("503", "temporarily_unavailable: the store did not answer"),
                    )
                },
            },
        }
    }


OAUTH_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
