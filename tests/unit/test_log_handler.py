"""web.logs.BufferedStderrHandler: info lines in batches, warnings at once, whole lines in
writes a pipe keeps whole, nothing lost at shutdown."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from centrali.web.logs import BufferedStderrHandler


@contextlib.contextmanager
def stderr_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Within: sys.stderr is a file of tmp_path (set inside the test: pytest's capture puts
    its own back between a fixture's set-up and the test); its path."""
    target = tmp_path / "stderr"
    with target.open("w") as fake_stderr:
        monkeypatch.setattr(sys, "stderr", fake_stderr)
        yield target


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("centrali.access", level, __file__, 1, message, None, None)


def test_info_waits_warning_does_not_and_close_keeps_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stderr_file(tmp_path, monkeypatch) as target:
        handler = BufferedStderrHandler(interval=60)  # the flusher stays out of the way
        handler.emit(record(logging.INFO, "GET /healthz 200"))
        assert target.read_text() == ""  # waiting
        handler.emit(record(logging.WARNING, "store unavailable"))
        assert target.read_text() == "GET /healthz 200\nstore unavailable\n"  # in order
        for i in range(1000):
            handler.emit(record(logging.INFO, f"line {i}"))
        handler.close()
        lines = target.read_text().splitlines()
        assert lines == ["GET /healthz 200", "store unavailable"] + [
            f"line {i}" for i in range(1000)
        ]
        handler.emit(record(logging.INFO, "after close"))  # written at once, no error
        handler.close()
        assert target.read_text().endswith("after close\n")


def test_the_flusher_writes_waiting_lines_within_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stderr_file(tmp_path, monkeypatch) as target:
        handler = BufferedStderrHandler(interval=0.05)
        handler.emit(record(logging.INFO, "GET /healthz 200"))
        deadline = time.monotonic() + 10
        while "GET /healthz 200" not in target.read_text():
            assert time.monotonic() < deadline, "the flusher never wrote the line"
            time.sleep(0.02)
        handler.close()


def test_writes_are_whole_lines_of_at_most_4_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    writes: list[bytes] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        if fd == write_end:
            writes.append(bytes(data))
        return real_write(fd, data)

    with os.fdopen(write_end, "w") as fake_stderr, os.fdopen(read_end, "rb") as reader:
        monkeypatch.setattr(sys, "stderr", fake_stderr)
        monkeypatch.setattr(os, "write", spy)
        handler = BufferedStderrHandler(interval=60)
        lines = [f"line {i} " + "x" * (i % 300) for i in range(300)] + ["y" * 5000]
        for line in lines:
            handler.emit(record(logging.INFO, line))
        handler.close()
        fake_stderr.close()
        assert reader.read().decode().splitlines() == lines
    assert len(writes) > 1
    for chunk in writes:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= 4096 or chunk.count(b"\n") == 1  # a long line goes alone


def test_without_a_descriptor_it_writes_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    handler = BufferedStderrHandler()
    handler.emit(record(logging.INFO, "one"))
    assert captured.getvalue() == "one\n"
    handler.close()


def test_an_access_line_made_directly_is_the_formatters_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """logs.log_access writes the served configuration's access line itself; the line is
    the one logging and JsonFormatter write for the same request, field for field."""
    import json

    from centrali.web import logs

    target = tmp_path / "stderr"
    parent = logging.getLogger("centrali")
    with target.open("w") as fake_stderr:
        monkeypatch.setattr(sys, "stderr", fake_stderr)
        handler = BufferedStderrHandler(interval=60)
        handler.setFormatter(logs.JsonFormatter())
        monkeypatch.setattr(parent, "handlers", [handler])
        monkeypatch.setattr(parent, "propagate", False)
        level = parent.level
        parent.setLevel(logging.INFO)  # (setLevel, not setattr: it clears the loggers' caches)
        request.addfinalizer(lambda: parent.setLevel(level))
        monkeypatch.setattr(logs._ACCESS, "handlers", [])
        monkeypatch.setattr(logs._ACCESS, "propagate", True)
        token = logs.request_id.set("rid-1")
        try:
            assert logs._direct_json_handler() is handler
            logs.log_access("GET", '/a "b"\n\u00e9', 404, 1.25, "127.0.0.1")
            seen: list[str] = []
            monkeypatch.setattr(logs, "_direct_json_handler", lambda: seen.append("x"))
            logs.log_access("GET", '/a "b"\n\u00e9', 404, 1.25, "127.0.0.1")
            assert seen == ["x"]  # the second line went through logging
        finally:
            logs.request_id.reset(token)
        handler.close()
    direct, routed = (json.loads(line) for line in target.read_text().splitlines())
    assert direct.pop("time")[:10] == routed.pop("time")[:10]
    assert list(direct.items()) == list(routed.items())
    assert direct["message"] == 'GET /a "b"\n\u00e9 404' and direct["requestId"] == "rid-1"


def test_any_other_set_up_takes_the_logging_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from centrali.web import logs

    monkeypatch.setattr(logs._ACCESS, "handlers", [logging.NullHandler()])
    assert logs._direct_json_handler() is None
