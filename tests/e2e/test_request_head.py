"""The request head over a real socket against ``centrali serve`` (issue 12, item 10): capped at
16 KiB (431, nothing reaches the app), and due within 10 s (408, or a silent close for a
connection that sent nothing), on the httptools protocol the workers run.

One server for the module; the slow-head cases run side by side in threads, so the module
waits out the 10 s deadline once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from centrali.web.http_protocol import HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES
from tests.e2e.conftest import Server, base_env, launcher

pytestmark = pytest.mark.e2e

KIB = 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("request-head")
    with launcher(tmp) as launch:
        (started,) = launch(base_env(CENTRALI_DATA_DIR=str(tmp / "data")))
        yield started


def connect(server: Server, timeout: float = 20.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer: status, headers (lower-case names), body (by content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def head_with(*, path: str = "/healthz", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_cap_is_16_kib() -> None:
    assert MAX_HEAD_BYTES == 16 * KIB and HEAD_TIMEOUT_SECONDS == 10.0  # the README's figures


@pytest.mark.parametrize(
    "head",
    [
        head_with(headers=[("X-Pad", "a" * (15 * KIB))]),
        head_with(headers=[(f"X-Pad-{i}", "b" * 100) for i in range(140)]),  # ~15.5 KiB
        head_with(path="/healthz?" + "q" * (15 * KIB)),
    ],
    ids=["one-15-kib-header", "140-headers", "15-kib-url"],
)
def test_a_head_under_16_kib_is_served(server: Server, head: bytes) -> None:
    assert len(head) < MAX_HEAD_BYTES
    with connect(server) as sock:
        sock.sendall(head)
        status, _headers, body = read_answer(sock)
        assert status == 200, body
        sock.sendall(head_with())  # and the connection is kept alive
        assert read_answer(sock)[0] == 200


@pytest.mark.parametrize(
    "head",
    [
        head_with(headers=[("X-Pad", "a" * (17 * KIB))]),
        head_with(headers=[(f"X-Pad-{i}", "b" * 100) for i in range(170)]),  # ~18.5 KiB
        head_with(path="/healthz?" + "q" * (17 * KIB)),
        head_with(headers=[("X-Pad", "a" * (MAX_HEAD_BYTES + 1))]),
    ],
    ids=["one-17-kib-header", "170-headers", "17-kib-url", "one-byte-over"],
)
def test_a_head_over_16_kib_gets_431_and_a_close(server: Server, head: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(head)
        status, headers, body = read_answer(sock)
        assert status == 431, body
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"] == "request_header_fields_too_large"
        assert closed_by_server(sock)


def test_an_endless_header_is_cut_off_early(server: Server) -> None:
    # httptools buffers an unfinished header without limit: the server must stop reading it
    # long before the client stops sending (here 1 MiB).
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        sent = 0
        try:
            while sent < 1024 * KIB:
                sock.sendall(b"a" * (4 * KIB))
                sent += 4 * KIB
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < MAX_HEAD_BYTES + 256 * KIB, f"still reading after {sent} bytes"
        try:
            status, _headers, body = read_answer(sock)
        except ConnectionResetError:
            return  # the 431 was lost to the reset of our unread bytes: cut off all the same
        assert status == 431, body


def trickle_until_answered(sock: socket.socket, *, pause: float) -> None:
    """Start a head, then send one more header byte every ``pause`` seconds, until the
    server answers or closes (or 20 s pass)."""
    start = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while time.monotonic() - start < 20:
            sock.settimeout(pause)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                sock.sendall(b"a")
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(5)


def test_a_slow_head_is_cut_off_after_10_s(server: Server) -> None:
    outcomes: dict[str, tuple[float, object]] = {}

    def trickle() -> None:
        # A header byte every half second: never a complete head.
        with connect(server) as sock:
            start = time.monotonic()
            trickle_until_answered(sock, pause=0.5)
            outcomes["trickle"] = (time.monotonic() - start, read_answer(sock)[0])

    def silent() -> None:
        # Opens and sends nothing.
        with connect(server) as sock:
            start = time.monotonic()
            closed = closed_by_server(sock)
            outcomes["silent"] = (time.monotonic() - start, closed)

    def after_keep_alive() -> None:
        # A request answered, then half of the next head.
        with connect(server) as sock:
            sock.sendall(head_with())
            assert read_answer(sock)[0] == 200
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            start = time.monotonic()
            status = read_answer(sock)[0]
            outcomes["after_keep_alive"] = (time.monotonic() - start, status)

    def late_trickle() -> None:
        # Silent for half the deadline, then a head a byte at a time: the deadline still
        # counts from the connection's opening, not from the first byte.
        with connect(server) as sock:
            start = time.monotonic()
            time.sleep(HEAD_TIMEOUT_SECONDS / 2)
            trickle_until_answered(sock, pause=0.25)
            outcomes["late_trickle"] = (time.monotonic() - start, read_answer(sock)[0])

    def busy_then_slow() -> None:
        # Six seconds of requests on one connection, then half a head: the deadline counts
        # from that head's first byte, not from the connection's (one timer per connection).
        with connect(server) as sock:
            until = time.monotonic() + 6
            while time.monotonic() < until:
                sock.sendall(head_with())
                assert read_answer(sock)[0] == 200
                time.sleep(0.2)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            start = time.monotonic()
            status = read_answer(sock)[0]
            outcomes["busy_then_slow"] = (time.monotonic() - start, status)

    def steady() -> None:
        # Requests for longer than the deadline, each head complete at once: never cut.
        with connect(server) as sock:
            start = time.monotonic()
            answered = 0
            while time.monotonic() - start < HEAD_TIMEOUT_SECONDS + 3:
                sock.sendall(head_with())
                assert read_answer(sock)[0] == 200
                answered += 1
                time.sleep(0.3)
            outcomes["steady"] = (HEAD_TIMEOUT_SECONDS, answered)

    def guarded(case: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                case()
            except Exception as exc:  # a case the server never cut off times out here
                outcomes.setdefault(case.__name__, (float("nan"), repr(exc)))

        return run

    cases = (trickle, silent, after_keep_alive, late_trickle, busy_then_slow, steady)
    threads = [threading.Thread(target=guarded(case)) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert set(outcomes) == {case.__name__ for case in cases}, outcomes
    answered = outcomes.pop("steady")[1]
    # from the connection's opening: 15 s (5 silent + 10) would mean the clock restarted
    assert outcomes["late_trickle"][0] < HEAD_TIMEOUT_SECONDS + 3, outcomes["late_trickle"]
    assert isinstance(answered, int) and answered >= 30, answered
    for name, (elapsed, result) in outcomes.items():
        assert result == (True if name == "silent" else 408), (name, result)
        assert HEAD_TIMEOUT_SECONDS - 1 <= elapsed <= HEAD_TIMEOUT_SECONDS + 5, (name, elapsed)
