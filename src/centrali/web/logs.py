"""Server logs: one JSON object per line, each with the id of the request it belongs to.

Nothing secret reaches a log line: the token endpoint logs the outcome and the client_id,
never a form, a header, a secret or a token; access lines carry the path without its query.
"""

from __future__ import annotations

import json
import logging
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


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "requestId", ...extra}`` per record."""

    _second: int | None = None
    _second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid != "-":
            line["requestId"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
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


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and ours: every line to stderr."""
    formatter = (
        "centrali.web.logs.JsonFormatter" if fmt == "json" else ("centrali.web.logs.TextFormatter")
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Access lines come from our middleware (with the request id and timing).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "centrali": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
