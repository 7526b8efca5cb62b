"""ASGI middleware: bodies over the size limit get 413 before the app reads them."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    """Raised while the app reads a body that outgrows the limit (no Content-Length)."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


class BodyTooSlowError(HTTPException):
    """Raised while the app waits for a body the client takes too long to send."""

    def __init__(self) -> None:
        super().__init__(408, "Request body too slow")


class BodyLimitMiddleware:
    """Bodies over ``max_bytes`` get 413; a body not complete ``body_timeout`` seconds after
    the app starts reading it gets 408, so a slow client cannot hold a request open."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(send, 413, too_large_body(scope["path"]))
                    return
                break
        received = 0
        started = False
        body_done = False
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, body_done, deadline
            if body_done:  # only a disconnect can come now: wait for it as long as it takes
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlowError() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError()
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await self._refuse(send, 413, too_large_body(scope["path"]))
        except BodyTooSlowError:
            if not started:
                await self._refuse(send, 408, too_slow_body(scope["path"]))

    async def _refuse(self, send: Send, status: int, payload: dict[str, str]) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"cache-control", b"no-store"),
                    (b"pragma", b"no-cache"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def too_large_body(path: str) -> dict[str, str]:
    """OAuth-style under /oidc/, the API's ``{"error", "message"}`` elsewhere."""
    if path.startswith("/oidc/"):
        return {"error": "invalid_request", "error_description": "Request body too large"}
    return {"error": "payload_too_large", "message": "Request body too large"}


def too_slow_body(path: str) -> dict[str, str]:
    if path.startswith("/oidc/"):
        return {"error": "invalid_request", "error_description": "Request body too slow"}
    return {"error": "request_timeout", "message": "Request body too slow"}
