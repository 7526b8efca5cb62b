"""Password checks (argon2id, ~50 ms of CPU and 19 MiB each) behind a bound.

A flood of sign-ins must not take the threads the rest of the API runs its blocking work in
(Starlette's thread pool): checks run in a small pool of their own, ``workers`` at once, and
at most ``WAITING_PER_WORKER`` × ``workers`` more wait for a turn. Past that a check is
refused at once (``PasswordGateFull``: the sign-in page answers 503 with ``Retry-After``)
instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

WAITING_PER_WORKER = 4


class PasswordGateFull(Exception):
    """Every password-check thread is busy and the queue is full: try again shortly."""


class PasswordGate:
    def __init__(self, workers: int, waiting: int | None = None) -> None:
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None  # made at the first check
        self.bound = workers + (WAITING_PER_WORKER * workers if waiting is None else waiting)
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Checks running or waiting now."""
        return self._admitted

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a password-check thread; raises PasswordGateFull at
        once when ``bound`` checks are running or waiting already."""
        with self._lock:
            if self._admitted >= self.bound:
                raise PasswordGateFull
            self._admitted += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix="centrali-password"
                )
            executor = self._executor
        try:
            future = executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._release(None)
            raise
        # Released when the check is over (or cancelled before it started), not when the
        # caller stops waiting: a disconnected client's check still holds its place.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Stop the threads (checks waiting are cancelled); a later check starts new ones
        (an app whose lifespan runs again keeps working)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
