"""web.http_protocol._JoinedWrites: the writes of one turn of the loop leave as one."""

from __future__ import annotations

import asyncio
from typing import Any

from centrali.web.http_protocol import _JoinedWrites


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_turn_leave_as_one_and_in_order() -> None:
    async def run() -> FakeTransport:
        fake = FakeTransport()
        joined = _JoinedWrites(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.write(memoryview(b"{}"))
        assert fake.writes == []  # not before the turn ends
        await asyncio.sleep(0)
        assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        joined.write(b"next")
        await asyncio.sleep(0)
        assert fake.writes[1:] == [b"next"]
        assert joined.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest: delegated
        return fake

    asyncio.run(run())


def test_close_sends_what_is_pending_first_and_nothing_after() -> None:
    async def run() -> None:
        fake = FakeTransport()
        joined = _JoinedWrites(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(b"refused")
        joined.close()
        assert fake.writes == [b"refused"] and fake.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing, writes nothing
        assert fake.writes == [b"refused"]
        joined.write(b"late")
        await asyncio.sleep(0)
        assert fake.writes == [b"refused"]  # a closing transport is not written to
        assert joined.is_closing()

    asyncio.run(run())
