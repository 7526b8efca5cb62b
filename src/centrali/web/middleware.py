"""The outermost layer of every answer: request id, security headers, ``Cache-Control:
no-store`` by default under ``/workspace/`` and ``/oidc/``, metrics, access log.

A plain ASGI middleware (no ``BaseHTTPMiddleware``): it wraps ``send`` to add headers and
note the status, and costs a few microseconds per request, the token endpoint included.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from centrali.web import metrics
from centrali.web.logs import log_access, request_id

access_log = logging.getLogger("centrali.access")  # written by logs.log_access

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")

# Every answer: no sniffing, no framing, no referrer; JSON answers need no other source.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_DEFAULT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_HSTS = (b"strict-transport-security", b"max-age=31536000")
# The workspace API and the provider's endpoints answer with account data, secrets or
# tokens: never stored by a cache unless the route says otherwise (the JWKS: public).
_PRIVATE_PREFIXES = ("/workspace/", "/oidc/")
_NO_STORE = (b"cache-control", b"no-store")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _REQUEST_ID.fullmatch(value):
                    rid = value.decode("ascii")
                break
        if rid is None:
            rid = os.urandom(8).hex()
        token = request_id.set(rid)
        status = 0  # no answer started yet
        https = scope.get("scheme") == "https"
        private = scope["path"].startswith(_PRIVATE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", rid.encode("ascii")))
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in names)
                if b"content-security-policy" not in names:
                    headers.append(_DEFAULT_CSP)
                if https:
                    headers.append(_HSTS)
                if private and b"cache-control" not in names:
                    headers.append(_NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_headers)
            failed = False
        finally:
            if not status:
                # Nothing was answered: a bug (500), or a client that hung up first (499,
                # nginx's "client closed request"), which is no server error.
                status = 500 if failed else 499
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = scope["method"]
            metrics.request_answered(route, method, status, elapsed)
            if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log_access(
                    method,
                    scope["path"],
                    status,
                    round(elapsed * 1000, 3),
                    client[0] if client else None,
                )
            request_id.reset(token)


def _route_of(scope: Scope) -> str:
    """The route template (``/workspace/{slug}/...``), never the raw path: bounded labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope["path"] == "/oidc/token":
        return "/oidc/token"
    return "unmatched"
