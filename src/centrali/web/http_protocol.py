"""The HTTP/1.1 protocol every worker runs: uvicorn's httptools protocol with a cap on the
request head and a deadline for sending it.

uvicorn's own head limit (``h11_max_incomplete_event_size``) applies only to its h11
protocol, and httptools (llhttp) has none: a client could send headers without end, each
byte buffered, and a connection that opens and sends nothing, or sends its head a byte at a
time, is never timed out (uvicorn's keep-alive timer only runs between requests). Here:

- the request head (request line and header fields) is capped at ``MAX_HEAD_BYTES`` (16 KiB):
  past it the answer is 431 with ``Connection: close`` and nothing reaches the app. A head
  still incomplete is counted by the bytes received since it began, so an endless header is
  cut off after at most one more read (64 KiB), whatever httptools buffers meanwhile;
- the head must be complete within ``HEAD_TIMEOUT_SECONDS`` (10 s) of the connection opening
  or of its first byte (on a keep-alive connection); past it a client that sent part of a head
  gets 408 and the connection is closed, one that sent nothing is simply closed. The body has
  its own deadline (``CENTRALI_BODY_TIMEOUT``, web.body_limit), idle keep-alive connections
  theirs (``CENTRALI_KEEP_ALIVE_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import http
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_SECONDS = 10.0

# Per header line: ": " and CRLF; the request line's method, version and CRLFs are small
# enough to leave out, so the cap errs by a few bytes in the client's favour.
_HEADER_OVERHEAD = 4


def _refusal(status: int, error: str, message: str, default_headers: Any) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    phrase = http.HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"cache-control: no-store",
        b"x-content-type-options: nosniff",
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


HEAD_TOO_LARGE = (431, "request_header_fields_too_large", "Request head over 16 KiB")
HEAD_TOO_SLOW = (408, "request_timeout", "Request head too slow")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the head cap and the head deadline (module docstring)."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True  # no head complete since the last message (or ever)
        self._head_received = 0  # bytes received while the head was incomplete
        self._head_parsed = 0  # request line and header fields, as parsed
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since: float | None = None  # when the pending head began (loop time)
        self._refused = False

    # --- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn writes an answer's head and body apart: one send() each, and the client
        # woken twice. Both writes happen in the same turn of the loop, so they are joined
        # and sent once, at the end of the turn (_JoinedWrites).
        self.transport = _JoinedWrites(transport, self.loop)  # type: ignore[assignment]
        self._head_since = self.loop.time()  # the first head's clock starts now
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_head and self._head_since is None:
            # the first byte of a head on a keep-alive connection: its clock starts
            self._head_since = self.loop.time()
            if self._head_timer is None:
                self._arm_head_timer()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does (we serve no websockets)
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:  # not stopped by us: uvicorn's answer to a bad request
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._awaiting_head and not self._refused:
            # Every byte of this read belongs to an unfinished head (or, with pipelining, to
            # the end of the previous message: counted too, which errs against the client).
            self._head_received += len(data)
            if max(self._head_received, self._head_parsed) > self.max_head_bytes:
                self._refuse(*HEAD_TOO_LARGE)

    # --- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True
        self._head_parsed = 0
        if self._head_since is None:  # else its clock started at the connection or byte one
            self._head_since = self.loop.time()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + _HEADER_OVERHEAD
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_received = 0
        if self._head_parsed > self.max_head_bytes:
            self._refuse(*HEAD_TOO_LARGE)
            raise _HeadRefused  # stops the parser: nothing of this request reaches the app
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True  # the next head's clock starts with its first byte
        self._head_since = None

    # --- the deadline and the refusals ----------------------------------------------------

    # One timer per connection, not one per request: it stays armed while heads keep
    # arriving, and when it fires it looks at the head now pending (``_head_since``) and
    # either refuses it or sleeps until that head's own deadline.

    def _arm_head_timer(self, delay: float | None = None) -> None:
        self._cancel_head_timer()
        delay = self.head_timeout if delay is None else delay
        self._head_timer = self.loop.call_later(delay, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self._refused or self.transport.is_closing():
            return  # re-armed by the next head's first byte
        if self._head_since is None:
            return  # idle between requests: uvicorn's keep-alive timeout's business
        left = self._head_since + self.head_timeout - self.loop.time()
        if left > 0:
            self._arm_head_timer(left)
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head stalls behind a request in flight: end after its answer.
            self.cycle.keep_alive = False
            return
        if self._head_received or self._head_parsed:
            self._refuse(*HEAD_TOO_SLOW)
        else:  # nothing sent: nothing to answer
            self._refused = True
            self.transport.close()

    def _refuse(self, status: int, error: str, message: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        self.logger.info("refused a request head: %s", message)
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never inside another answer
            self.transport.write(
                _refusal(status, error, message, self.server_state.default_headers)
            )
        self.transport.close()


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


_JOIN_AT_MOST = 64 * 1024


class _JoinedWrites:
    """A transport whose writes of one turn of the event loop go out as one ``write``.

    The first write of a turn schedules the flush (``call_soon``: after the callbacks
    already due, before the loop next waits for I/O); past 64 KiB pending, or on ``close``,
    it flushes at once. Everything
    else is the wrapped transport's (flow control included: it sees the joined bytes)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._pending_size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._pending_size = len(data)
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(bytes(data))
            self._pending_size += len(data)
        if self._pending_size > _JOIN_AT_MOST:  # a large body: on at once, flow control too
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
