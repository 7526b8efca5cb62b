"""The uvicorn settings every worker runs with."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from centrali.config import Settings
from centrali.web.http_protocol import GuardedHttpToolsProtocol
from centrali.web.supervisor import _listening_socket, uvicorn_options


def test_workers_run_the_standard_event_loop_with_httptools(settings: Settings) -> None:
    # uvloop starved connections opened under load (see uvicorn_options); keep it out.
    options = uvicorn_options(settings)
    assert options["loop"] == "asyncio"
    # httptools, with the head cap and deadline of our own (tests/e2e/test_request_head.py):
    # h11_max_incomplete_event_size would only apply to uvicorn's h11 protocol.
    assert options["http"] is GuardedHttpToolsProtocol
    assert issubclass(GuardedHttpToolsProtocol, HttpToolsProtocol)
    assert not any(name.startswith("h11_") for name in options)
    assert options["server_header"] is False and options["access_log"] is False


def test_connections_accepted_on_a_worker_socket_have_nagle_off() -> None:
    # uvicorn writes an answer's head and body apart: with Nagle on, the body waits for the
    # client's delayed ACK (40 ms a request).
    listener = _listening_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    seen: list[int] = []

    async def main() -> None:
        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
