"""``POST /oidc/token`` as a bare ASGI handler, in front of the framework.

The token endpoint is the hot path: one batched lookup, one hash, one signature. Routing,
dependency injection and the middleware stack would cost more than that, so the dispatcher
answers this one path itself and hands everything else to the FastAPI app;
``token_openapi()`` describes it in the app's OpenAPI document. It only reads and writes
HTTP: the client's authentication is the core's pipeline (``oauth.client_auth``), the grant
the core's token endpoint (``oauth.token_endpoint``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from centrali.oauth.client_auth import JWT_BEARER, Authenticated, ClientAuthRequest
from centrali.oauth.errors import InvalidClientError, OAuthError, TemporarilyUnavailableError
from centrali.oauth.grants import TokenResponse
from centrali.oauth.limits import SlowDownError
from centrali.oauth.token_endpoint import (
    PreparedTokenRequest,
    TokenRequest,
    complete_token_request,
    needs_user_store,
    parse_form,
    prepare_token_request,
)
from centrali.oauth.user_ports import PublicClient
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
_SERVER_ERROR = {"error": "server_error", "error_description": "Internal server error"}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class _Disconnected(Exception):
    pass


def refusal_reason(exc: OAuthError) -> str:
    """A short, bounded label for a refusal: the metrics' ``reason``."""
    if isinstance(exc, InvalidClientError):
        return exc.detail or "no_credentials"
    if isinstance(exc, SlowDownError):
        return "rate_limited"
    if isinstance(exc, TemporarilyUnavailableError):
        return "unavailable"
    return exc.error


def as_oauth_error(exc: Exception, component: str) -> OAuthError | None:
    """The OAuth error to answer for ``exc`` (a store that did not answer is 503
    ``temporarily_unavailable``); None for a bug. The one place the OAuth endpoints make
    that conversion."""
    if isinstance(exc, OAuthError):
        return exc
    if isinstance(exc, StoreUnavailableError):
        metrics.STORE_ERRORS.labels(component).inc()
        return TemporarilyUnavailableError(detail=f"store: {exc}")
    return None


async def issue_token(
    runtime: Runtime, prepared: PreparedTokenRequest, authenticated: Authenticated
) -> TokenResponse:
    """The grant, once the client is authenticated: on the event loop for a service
    account (one signature, no I/O: a thread hop would cost more than the work); in a
    worker thread for a public client's user grant, which writes to the store (consumes the
    code, rotates the refresh token) in a transaction that may wait for a lock."""
    if needs_user_store(authenticated):
        assert isinstance(authenticated.client, PublicClient)
        return await asyncio.to_thread(
            complete_user_grant,
            prepared,
            authenticated.client,
            config=runtime.issuer_config,
            clock=runtime.clock,
            db=runtime.db,
            settings=runtime.settings,
        )
    config = runtime.issuer_config
    response = complete_token_request(prepared, authenticated, config=config, clock=runtime.clock)
    if response.reused_jti is not None and config.reuse is not None:
        # Answered from memory: unless that token was revoked meanwhile (on any instance).
        if await runtime.revoked_jtis.find(response.reused_jti):
            config.reuse.forget(response.reused_jti)
            response = complete_token_request(
                prepared, authenticated, config=config, clock=runtime.clock
            )
    return response


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
            use_post = {"error": "invalid_request", "error_description": "Use POST"}
            await _answer(send, 405, use_post, [(b"allow", b"POST")])
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
        try:
            prepared = prepare_token_request(
                TokenRequest(form=parse_form(content_type, body), authorization=authorization)
            )
            request = ClientAuthRequest(
                form=prepared.form,
                authorization=authorization,
                ip=ip,
                allow_none=prepared.allows_public_client,
            )
            ready = prepared

            async def grant(authenticated: Authenticated) -> TokenResponse:
                return await issue_token(runtime, ready, authenticated)

            response = await runtime.authenticator.authenticate(request, time.time(), grant)
        except Exception as exc:
            refusal = as_oauth_error(exc, "token")
            if refusal is None:  # a bug: a fixed answer on the wire, the traceback in the log
                log.exception("token endpoint failed")
                metrics.TOKENS_REFUSED.labels("server_error").inc()
                await _answer(send, 500, _SERVER_ERROR, [])
                return
            metrics.TOKENS_REFUSED.labels(refusal_reason(refusal)).inc()
            headers = [(k.lower().encode(), v.encode()) for k, v in refusal.headers().items()]
            await _answer(send, refusal.status_code, refusal.body(), headers)
            return
        metrics.tokens_issued(prepared.grant.grant_type).inc()
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
                                "client_assertion_type": {
                                    "type": "string",
                                    "enum": [JWT_BEARER],
                                    "description": "private_key_jwt or a federated workload "
                                    "token (RFC 7523 §2.2)",
                                },
                                "client_assertion": {"type": "string"},
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
                        (
                            "503",
                            "temporarily_unavailable: the store, or a federated credential's "
                            "issuer, did not answer (Retry-After)",
                        ),
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
