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
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

APP = "centrali.web.app:create_app_from_env"


def uvicorn_options(log_level: str) -> dict[str, Any]:
    """The uvicorn settings of every worker, whichever way it is started."""
    return {
        "factory": True,
        "log_level": log_level,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    sock = _listening_socket(host, port)
    config = uvicorn.Config(APP, **uvicorn_options(log_level))
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """Run ``workers`` processes until SIGTERM/SIGINT; restart any that dies."""
    _listening_socket(host, port).close()  # fail here, once, if the port is taken
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(host, port, log_level), daemon=False)
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
                time.sleep(1.0)  # a worker that dies at start must not spin the machine
                processes[i] = start()
    for process in processes:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
