"""Several worker processes on one port, each with its own ``SO_REUSEPORT`` listening socket.

uvicorn's own ``--workers`` shares one socket between the workers, and whichever process
wakes first accepts: after an idle spell one worker can take every connection of a burst
while the other stays idle. With one socket per worker and ``SO_REUSEPORT`` (Linux) the
kernel spreads new connections across the workers. The supervisor restarts a worker that
dies and stops them all on SIGTERM/SIGINT (each finishes its in-flight requests).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

from centrali.config import Settings
from centrali.web.http_protocol import GuardedHttpToolsProtocol
from centrali.web.logs import lean_log_records, log_config

APP = "centrali.web.app:create_app_from_env"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's name (web.metrics)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings of every worker, whichever way it is started."""
    lean_log_records()
    options: dict[str, Any] = {
        "factory": True,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level, settings.log_format),
        "access_log": False,  # ours, with the request id: web.middleware
        # Behind a proxy the client address (and so the abuse limits) comes from
        # X-Forwarded-For, trusted only from the addresses listed.
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
        "server_header": False,
        "date_header": True,
        "timeout_keep_alive": settings.keep_alive_timeout,
        # SIGTERM: stop accepting, let in-flight requests finish (up to this long), exit.
        "timeout_graceful_shutdown": 10,
        # The standard library's event loop, not uvloop. Measured on 2 cores at 64
        # connections (bench/): uvloop answered 5-10 % more tokens/s, but a connection
        # opened while the worker was saturated waited up to 0.4-0.5 s for its first answer
        # (max 430-530 ms against 105-185 ms here; p99 140 against 90-125 ms on PostgreSQL).
        # An even share for every client is worth more to an auth server, and it keeps a
        # third-party loop out of the path that carries secrets.
        "loop": "asyncio",
        # httptools, with the request head capped at 16 KiB and due within 10 s
        # (web.http_protocol: uvicorn's h11_max_incomplete_event_size does nothing here).
        "http": GuardedHttpToolsProtocol,
    }
    if settings.ssl_certfile:
        options["ssl_certfile"] = settings.ssl_certfile
        options["ssl_keyfile"] = settings.ssl_keyfile or None
    return options


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and uvicorn writes the head and the body of an answer apart; with Nagle on,
    # the body waited for the client's delayed ACK (~40 ms per answer at low concurrency).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(host: str, port: int) -> None:
    settings = Settings()  # the supervisor exported the resolved settings
    sock = _listening_socket(host, port)
    config = uvicorn.Config(APP, **uvicorn_options(settings))
    # uvicorn re-raises the SIGTERM it caught once it has drained: leave through SystemExit
    # then, so the interpreter exits normally (logging writes what it buffered) with 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.Server(config).run(sockets=[sock])


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def serve_workers(host: str, port: int, workers: int) -> None:
    """Run ``workers`` processes until SIGTERM/SIGINT; restart any that dies."""
    _listening_socket(host, port).close()  # fail here, once, if the port is taken
    own_metrics_dir = MULTIPROC_ENV not in os.environ
    if own_metrics_dir:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="centrali-metrics-")
    try:
        _supervise(host, port, workers)
    finally:
        if own_metrics_dir:
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)


def _supervise(host: str, port: int, workers: int) -> None:
    from prometheus_client import multiprocess

    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(host, port), daemon=False)
        process.start()
        return process

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(workers)]
    while not stopping:
        time.sleep(0.5)
        for i, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                if process.pid is not None:
                    multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
                time.sleep(1.0)  # a worker that dies at start must not spin the machine
                processes[i] = start()
    for process in processes:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
