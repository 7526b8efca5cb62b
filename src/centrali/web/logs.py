"""Server logs: one JSON object per line, each with the id of the request it belongs to.

Nothing secret reaches a log line: the token endpoint logs the outcome and the client_id,
never a form, a header, a secret or a token; access lines carry the path without its query.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str] = ContextVar("centrali_request_id", default="-")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with ANSI colours
}


def lean_log_records() -> None:
    """Stop logging from gathering what no line of ours prints: the caller's file, line and
    function (a walk up the stack per record), thread, process and task names (the logging
    HOWTO's "Optimization"). Every access line paid for them. Called once per worker."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12+
        logging.logAsyncioTasks = False


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "requestId", ...extra}`` per record."""

    # (second, its text): one tuple, replaced whole, so a line formatted on another thread
    # never pairs a second with another second's text.
    _second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:  # strftime once a second, not once a line
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        extra = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if record.exc_info:
            extra["exception"] = self.formatException(record.exc_info)
        return self.line(
            record.created, record.levelname.lower(), record.name, record.getMessage(), extra
        )

    def line(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> str:
        """The JSON line of a record with these fields (also logs.log_access's, which has
        no LogRecord)."""
        line: dict[str, Any] = {
            "time": self._time(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        rid = request_id.get()
        if rid != "-":
            line["requestId"] = rid
        line.update(extra)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # One record, one line: a newline smuggled into a logged value (an encoded path)
        # cannot start a forged line.
        message = record.getMessage()
        if "\n" in message or "\r" in message:
            record = logging.makeLogRecord(record.__dict__)
            record.msg = message.replace("\r", "\\r").replace("\n", "\\n")
            record.args = None
        record.request_id = request_id.get()
        return super().format(record)


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, written in batches: a line below WARNING waits for at most ``interval``
    seconds (a background thread writes what is waiting), so the access log costs one
    ``write`` per batch instead of one per request. A WARNING or worse is written at once
    with what waits before it, and so is everything when logging shuts down (a worker's
    normal exit, SIGTERM included); only a killed worker loses its last tenth of a second
    of info lines. Batches are cut at line ends into writes of at most ``PIPE_BUF`` bytes,
    which a pipe keeps whole, so the lines of several workers sharing one stderr never
    interleave mid-line."""

    _CHUNK = 4096  # PIPE_BUF on Linux
    _MAX_WAITING = 1 << 16

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(sys.stderr)
        try:
            self._fd: int | None = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # no descriptor: a test's capture
            self._fd = None
        self._waiting: list[bytes] = []
        self._waiting_size = 0
        self._interval = interval
        self._stop = threading.Event()
        if self._fd is not None:
            threading.Thread(target=self._write_often, name="centrali-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd is None:
            super().emit(record)  # line by line
            return
        try:
            self._add(self.format(record), urgent=record.levelno >= logging.WARNING)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._fd is None:
                super().flush()
            else:
                self._write_waiting()

    def write_info_line(self, line: str) -> None:
        """A formatted info line, as ``emit`` would have written it (logs.log_access)."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line, urgent=False)

    def _add(self, line: str, *, urgent: bool) -> None:
        """Queue one line; write what waits now if it is ``urgent`` (WARNING or worse), too
        much, or logging is shutting down. The caller holds the handler's lock."""
        data = (line + self.terminator).encode("utf-8", "backslashreplace")
        self._waiting.append(data)
        self._waiting_size += len(data)
        if urgent or self._waiting_size >= self._MAX_WAITING or self._stop.is_set():
            self._write_waiting()

    def _write_waiting(self) -> None:
        """Write what waits, in order, in writes of whole lines up to _CHUNK bytes (a longer
        line alone). The caller holds the handler's lock."""
        lines, self._waiting, self._waiting_size = self._waiting, [], 0
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > self._CHUNK:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:  # stderr gone (a closed pipe): nothing left to tell
            pass

    def _write_often(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()  # from now on every line is written at once
        self.flush()
        super().close()


_ACCESS = logging.getLogger("centrali.access")


def log_access(method: str, path: str, status: int, duration_ms: float, client: str | None) -> None:
    """One access line (``INFO``, logger ``centrali.access``). Where the served
    configuration sends it (the ``centrali`` logger's one BufferedStderrHandler, JSON, no
    filter) the line is made here, as JsonFormatter would make it, and handed to the
    handler: no LogRecord and no handler chain per request, a twentieth of a token
    request's CPU. Any other set-up (another handler, a filter, the text format, a test's
    capture) gets the same line through ``logging``."""
    handler = _direct_json_handler()
    extra = {
        "method": method,
        "path": path,
        "status": status,
        "durationMs": duration_ms,
        "client": client,
    }
    if handler is None:
        _ACCESS.info("%s %s %d", method, path, status, extra=extra)
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter)
    message = f"{method} {path} {status:d}"
    handler.write_info_line(formatter.line(time.time(), "info", _ACCESS.name, message, extra))


def _direct_json_handler() -> BufferedStderrHandler | None:
    access = _ACCESS
    if access.handlers or access.filters or not access.propagate:
        return None
    parent = access.parent
    if (
        parent is None
        or parent.name != "centrali"
        or parent.filters
        or parent.propagate
        or len(parent.handlers) != 1
    ):
        return None
    handler = parent.handlers[0]
    if (
        type(handler) is not BufferedStderrHandler
        or handler._fd is None
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) is not JsonFormatter
    ):
        return None
    return handler


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and ours: every line to stderr
    (``BufferedStderrHandler``)."""
    formatter = (
        "centrali.web.logs.JsonFormatter" if fmt == "json" else ("centrali.web.logs.TextFormatter")
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {"class": "centrali.web.logs.BufferedStderrHandler", "formatter": "default"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Access lines come from our middleware (with the request id and timing).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "centrali": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
