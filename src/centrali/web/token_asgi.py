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

from centrali.oauth.errors import OAuthError, TemporarilyUnavailableError
from centrali.oauth.token_endpoint import TokenRequest, handle_token_request, parse_form
from centrali.store.client_store import StoreUnavailableError
from centrali.web.body_limit import too_large_body
from centrali.web.runtime import Runtime

log = logging.getLogger("centrali.web")

TOKEN_PATH = "/oidc/token"
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
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


async def issue_token(runtime: Runtime, request: TokenRequest) -> dict[str, Any]:
    """The token endpoint's work, on the event loop: one indexed lookup (a short blocking
    call), one hash, one signature. A thread hop would cost more than the lookup."""
    for _ in range(3):
        try:
            return handle_token_request(
                request, clients=runtime.clients, config=runtime.issuer_config, clock=_LOOP_CLOCK
            ).body()
        except _WaitFirst as wait:
            await asyncio.sleep(min(wait.seconds, 1.0))
        except StoreUnavailableError as exc:
            raise TemporarilyUnavailableError(detail=f"store: {exc}") from exc
    raise TemporarilyUnavailableError()


class TokenDispatcher:
    """Answers ``POST /oidc/token`` directly; passes every other request to ``app``."""

    def __init__(
        self, app: ASGIApp, *, runtime: Callable[[], Runtime], max_body_bytes: int
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes

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
        if too_large or body is None:
            await _answer(send, 413, too_large_body(TOKEN_PATH), [(b"connection", b"close")])
            return
        try:
            form = parse_form(content_type, body)
            token_request = TokenRequest(form=form, authorization=authorization)
            payload = await issue_token(self.runtime(), token_request)
        except OAuthError as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
            await _answer(send, exc.status_code, exc.body(), headers)
            return
        except Exception:  # a bug: a fixed answer on the wire, the traceback in the log
            log.exception("token endpoint failed")
            failure = {"error": "server_error", "error_description": "Internal server error"}
            await _answer(send, 500, failure, [])
            return
        await _answer(send, 200, payload, [])

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it outgrows the limit."""
        chunks: list[bytes] = []
        size = 0
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
            "description": "OAuth 2.0 token endpoint, client_credentials grant (RFC 6749 §4.4).",
            "operationId": "token",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                                "scope": {"type": "string"},
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
                        ("400", "invalid_request, unsupported_grant_type, invalid_scope"),
                        ("401", "invalid_client"),
                        ("413", "body too large"),
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
